"""IANA protocol numbers and the names the outputs use."""

PROTOCOL_NUMBERS = {"ICMP": 1, "TCP": 6, "UDP": 17, "ICMPv6": 58, "SCTP": 132}
PROTOCOL_NAMES = {v: k for k, v in PROTOCOL_NUMBERS.items()}

# SQL: IANA number -> output name; unknown numbers print as the number.
PROTO_NAME_SQL = ("CASE {col} " + " ".join(
    f"WHEN {n} THEN '{name}'" for n, name in PROTOCOL_NAMES.items())
    + " ELSE CAST({col} AS VARCHAR) END")

# SQL: a protocol given as a name (any case) or a number -> IANA number.
PROTO_NUMBER_SQL = ("CASE upper(CAST({col} AS VARCHAR)) " + " ".join(
    f"WHEN '{name.upper()}' THEN {n}" for name, n in PROTOCOL_NUMBERS.items())
    + " ELSE TRY_CAST({col} AS INTEGER) END")
