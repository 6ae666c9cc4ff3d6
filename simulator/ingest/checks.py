"""What a record's values may be, as SQL every format shares.

A value that is present but impossible is never coerced into a plausible one (DuckDB's
casts would turn "80.5" into 81, "0x50" into 80 and true into 1): the strict readers
below give NULL for an absent value and a sentinel for an impossible one, and the
record is then skipped and counted under a reason.

- ports: INTEGER 0-65535, NULL absent, PORT_INVALID (-2) impossible. The ephemeral-port
  fold (sources.fold_sql) maps every value outside 0-65535 to PORT_INVALID as well, so a
  raw -1 can never pass for a folded port;
- protocols: INTEGER 0-255, NULL absent, -1 impossible;
- counters (packets, bytes): BIGINT 0-MAX_COUNTER, NULL absent, -1 impossible;
- times: DOUBLE epoch seconds 0-MAX_EPOCH, NULL absent, -1 impossible.
"""

from __future__ import annotations

from ..protocols import PROTOCOL_NUMBERS

PORT_INVALID = -2
MAX_EPOCH = 253_402_300_799  # 9999-12-31T23:59:59Z: the last second a timestamp can hold
MAX_COUNTER = 10**15  # a petabyte or 10^15 packets in one record: not a measurement

_SMALL_INTS = ("TINYINT", "SMALLINT", "INTEGER", "UTINYINT", "USMALLINT")
_INTS = _SMALL_INTS + ("BIGINT", "UINTEGER", "UBIGINT", "HUGEINT", "UHUGEINT")
_FLOATS = ("FLOAT", "DOUBLE", "REAL", "DECIMAL")
_TEXT = ("VARCHAR",)


def family(type_: str | None) -> str:
    """int | float | text | json | other, of a DuckDB column type."""
    t = (type_ or "VARCHAR").upper()
    if "[" in t or "(" in t and not t.startswith("DECIMAL"):
        return "other"  # a list, array, struct, map or union
    if t.startswith(_INTS):
        return "int"
    if t.startswith(_FLOATS):
        return "float"
    if t == "JSON":
        return "json"
    if t.startswith(_TEXT):
        return "text"
    return "other"


def _absent(text: str) -> str:
    return f"NULLIF(NULLIF(trim({text}), ''), '-') IS NULL"


def _digits(text: str, lo: int, hi: int, invalid: int, width: int, cast: str,
            dash_is_absent: bool = True) -> str:
    """dash_is_absent: '', blanks and '-' mean no value (text logs); in JSON a string
    value is there, so an empty one is impossible."""
    t = f"trim({text})"
    absent = _absent(text) if dash_is_absent else f"{text} IS NULL"
    return f"""CASE WHEN {absent} THEN NULL
                    WHEN regexp_full_match({t}, '[0-9]{{1,{width}}}')
                         AND TRY_CAST({t} AS {cast}) BETWEEN {lo} AND {hi}
                        THEN TRY_CAST({t} AS {cast})
                    ELSE {invalid} END"""


def _strict(expr: str, type_: str | None, lo: int, hi: int, invalid: int, width: int,
            cast: str) -> str:
    fam = family(type_)
    if fam == "int":
        t = (type_ or "").upper()
        if t.startswith(_SMALL_INTS) or (cast == "BIGINT" and t.startswith(
                ("BIGINT", "UINTEGER"))):
            return expr  # fits its type; the range is checked where it is used
        return (f"CASE WHEN {expr} BETWEEN {lo} AND {hi} THEN {expr}::{cast} "
                f"WHEN {expr} IS NOT NULL THEN {invalid} END")
    if fam == "float":
        return (f"CASE WHEN {expr} IS NULL THEN NULL WHEN {expr} = floor({expr}) "
                f"AND {expr} BETWEEN {lo} AND {hi} THEN {expr}::{cast} ELSE {invalid} END")
    if fam == "json":
        return f"""CASE WHEN {expr} IS NULL OR json_type({expr}) = 'NULL' THEN NULL
                        WHEN json_type({expr}) IN ('UBIGINT', 'BIGINT')
                            THEN CASE WHEN TRY_CAST({expr} AS HUGEINT) BETWEEN {lo} AND {hi}
                                      THEN CAST({expr} AS {cast}) ELSE {invalid} END
                        WHEN json_type({expr}) = 'VARCHAR'
                            THEN {_digits(f"({expr} ->> '$')", lo, hi, invalid, width, cast,
                                          dash_is_absent=False)}
                        ELSE {invalid} END"""
    return _digits(f"CAST({expr} AS VARCHAR)", lo, hi, invalid, width, cast)


def port_sql(expr: str, type_: str | None = "VARCHAR") -> str:
    """A port from a column of type `type_` (DuckDB's name; JSON for raw JSON values)."""
    return _strict(expr, type_, 0, 65535, PORT_INVALID, 5, "INTEGER")


def counter_sql(expr: str, type_: str | None = "VARCHAR") -> str:
    return _strict(expr, type_, 0, MAX_COUNTER, -1, 16, "BIGINT")


def epoch_sql(expr: str, type_: str | None = "VARCHAR") -> str:
    """Epoch seconds from a number, a timestamp, or text holding either."""
    fam = family(type_)
    t = (type_ or "").upper()
    if t.startswith("TIMESTAMP") or t == "DATE":
        return f"epoch(CAST({expr} AS TIMESTAMPTZ))"
    if fam in ("int", "float"):
        return f"CAST({expr} AS DOUBLE)"
    text = f"trim(CAST({expr} AS VARCHAR))" if fam != "json" else f"trim({expr} ->> '$')"
    return f"""CASE WHEN {_absent(text)} THEN NULL
                    ELSE coalesce(TRY_CAST({text} AS DOUBLE),
                                  epoch(TRY_CAST({text} AS TIMESTAMPTZ)), -1) END"""


def proto_sql(expr: str, type_: str | None = "VARCHAR", names: dict[str, int] | None = None
              ) -> str:
    """An IANA protocol number from a number or a name (PROTOCOL_NUMBERS, any case, plus
    `names`): 0-255, NULL absent, -1 impossible."""
    fam = family(type_)
    if fam == "int":
        return f"CASE WHEN {expr} BETWEEN 0 AND 255 THEN {expr}::INTEGER " \
               f"WHEN {expr} IS NOT NULL THEN -1 END"
    if fam == "float":
        return (f"CASE WHEN {expr} IS NULL THEN NULL WHEN {expr} = floor({expr}) AND {expr} "
                f"BETWEEN 0 AND 255 THEN {expr}::INTEGER ELSE -1 END")
    text = f"trim(CAST({expr} AS VARCHAR))" if fam != "json" else f"trim({expr} ->> '$')"
    known = {k.upper(): v for k, v in {**PROTOCOL_NUMBERS, **(names or {})}.items()}
    whens = " ".join(f"WHEN '{k}' THEN {v}" for k, v in known.items())
    return f"""CASE upper({text}) {whens}
                    ELSE {_digits(text, 0, 255, -1, 3, 'INTEGER')} END"""


def l4_checks(proto: str) -> str:
    """Protocol and ports (sp, dp: the folded ports), as CASE branches. A source port may
    be absent (aggregated flow logs drop it); the destination port may not, for the
    protocols that have ports."""
    return f"""WHEN {proto} IS NULL THEN 'missing protocol'
            WHEN {proto} = -1 THEN 'invalid protocol (not a number 0-255 or a known name)'
            WHEN sp = {PORT_INVALID} OR dp = {PORT_INVALID}
                THEN 'invalid port (not an integer 0-65535)'
            WHEN {proto} IN (6, 17, 132) AND dp IS NULL
                THEN 'missing destination port'"""


# Per record, over the measures (t_start, t_end, packets, bytes): 1 a time, 2 a counter
# that no real record holds. Absent values (NULL) pass.
# (isnan: DuckDB folds the range test away when a Parquet file's statistics, which leave
# NaN out, say every value is in range)
RECORD_CHECK_SQL = f"""CASE
        WHEN NOT (t_start BETWEEN 0 AND {MAX_EPOCH}) OR NOT (t_end BETWEEN 0 AND {MAX_EPOCH})
             OR isnan(t_start) OR isnan(t_end)
            THEN 1
        WHEN NOT (packets BETWEEN 0 AND {MAX_COUNTER}) OR NOT (bytes BETWEEN 0 AND {MAX_COUNTER})
            THEN 2 END"""
RECORD_REASONS = {1: "invalid or absurd timestamp",
                  2: "invalid packet or byte count (negative, not an integer, or absurd)"}
RECORD_REASON_SQL = "CASE r_rec " + " ".join(
    f"WHEN {k} THEN '{v}'" for k, v in RECORD_REASONS.items()) + " END"

# An IPv4 address never talks to an IPv6 one: such a record is corrupt. (A side that is
# neither shape is not an address at all: reported as such when endpoints are resolved.)
_V4_SHAPE = r"'[0-9]{{1,3}}(\.[0-9]{{1,3}}){{3}}'"
_V6_SHAPE = r"'[0-9A-Fa-f:.]+'"
MIXED_FAMILY_SQL = f"""CASE WHEN contains({{src}}, ':') <> contains({{dst}}, ':') THEN CASE
        WHEN (regexp_full_match({{src}}, {_V4_SHAPE}) AND regexp_full_match({{dst}}, {_V6_SHAPE}))
          OR (regexp_full_match({{dst}}, {_V4_SHAPE}) AND regexp_full_match({{src}}, {_V6_SHAPE}))
        THEN 'source and destination of different address families' END END"""


def counter_sum_sql(a: str, b: str) -> str:
    """Two strict counters added (in + out, a direction and its reply): -1 if either is
    impossible, NULL if both are absent."""
    return (f"CASE WHEN {a} = -1 OR {b} = -1 THEN -1 WHEN {a} IS NULL AND {b} IS NULL "
            f"THEN NULL ELSE coalesce({a}, 0) + coalesce({b}, 0) END")


# Line-based readers (DuckDB's CSV reader) skip a line they cannot split (not UTF-8, too
# few or too many columns, longer than the line limit) instead of failing the file, and
# note it in these tables; the run counts such lines per file as skipped records
# (connections.collect_rejects).
REJECTS_TABLE, REJECTS_SCAN = "flow_rejects", "flow_reject_scans"
READ_REJECTS = (f", ignore_errors = true, store_rejects = true, "
                f"rejects_table = '{REJECTS_TABLE}', rejects_scan = '{REJECTS_SCAN}'")


def names_sql(names: str) -> str:
    """A list of DNS names (SQL VARCHAR[]) as the text the pipeline carries: lower case,
    without the root dot, distinct, sorted, comma-separated; NULL when there is none.
    What cannot be a DNS name (empty, longer than 253, holding a comma) is left out."""
    clean = f"list_transform({names}, lambda n: rtrim(lower(trim(n)), '.'))"
    kept = (f"list_filter({clean}, lambda n: n <> '' AND length(n) <= 253 "
            "AND NOT contains(n, ','))")
    return f"NULLIF(array_to_string(list_sort(list_distinct({kept})), ','), '')"
