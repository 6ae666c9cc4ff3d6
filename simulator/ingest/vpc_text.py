"""AWS VPC flow logs, text delivery to S3 (`*.log`, `*.log.gz`): one record per line,
fields separated by runs of whitespace, `-` for no value.

The field list comes from the file's header line (S3 writes one: the hyphenated field
names, any subset and order of the v2-v8 fields), else from --vpc-fields, else it is the
default v2 format. Each line is read as one VARCHAR and split in DuckDB; fields are then
picked by position. A record with the wrong number of fields is skipped and counted.

The record and group expressions are shared with the CloudWatch Logs module
(vpc_cloudwatch), whose log events each carry one such line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from ..errors import InputError
from . import vpc
from .checks import READ_REJECTS, counter_sql, epoch_sql, port_sql

REQUIRED = ("space-separated AWS VPC flow log text: a header line of field names "
            "(version srcaddr dstaddr ...), or records in the default v2 format "
            "(or the format given by --vpc-fields)")
OPTIONS = ("vpc_fields",)  # run options sniff() and describe() accept (sources.py)

DEFAULT_FIELDS = ("version", "account-id", "interface-id", "srcaddr", "dstaddr", "srcport",
                  "dstport", "protocol", "packets", "bytes", "start", "end", "action",
                  "log-status")
KNOWN_FIELDS = frozenset(DEFAULT_FIELDS + (
    # v3
    "vpc-id", "subnet-id", "instance-id", "tcp-flags", "type", "pkt-srcaddr", "pkt-dstaddr",
    # v4
    "region", "az-id", "sublocation-type", "sublocation-id",
    # v5
    "pkt-src-aws-service", "pkt-dst-aws-service", "flow-direction", "traffic-path",
    # v7 (ECS) and v8
    "ecs-cluster-arn", "ecs-cluster-name", "ecs-container-instance-arn",
    "ecs-container-instance-id", "ecs-container-id", "ecs-second-container-id",
    "ecs-service-name", "ecs-task-definition-arn", "ecs-task-arn", "ecs-task-id",
    "reject-reason", "resource-id", "encryption-status",
    # Transit Gateway flow logs share the address, port and protocol fields
    "tgw-id", "tgw-attachment-id", "tgw-src-vpc-id", "tgw-dst-vpc-id", "tgw-src-subnet-id",
    "tgw-dst-subnet-id", "tgw-src-eni", "tgw-dst-eni", "tgw-src-az-id", "tgw-dst-az-id",
    "tgw-pair-attachment-id", "packets-lost-no-route", "packets-lost-blackhole",
    "packets-lost-mtu-exceeded", "packets-lost-ttl-expired",
))
ADDRESS_FIELDS = frozenset({"srcaddr", "dstaddr", "pkt-srcaddr", "pkt-dstaddr"})
_NAME = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*\Z")
_VERSIONS = frozenset("2345678")
# A line longer than DuckDB's default (2 MB) is one bad record, not a failed file.
MAX_LINE = 64 * 1024 * 1024
_WS = "' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)"


# --- detection ------------------------------------------------------------------------------

def _first_line(head: str) -> str:
    for line in head.splitlines():
        if line.strip():
            return line
    return ""


def _header(line: str) -> list[str] | None:
    """The line's tokens when it is a header line: field names only, some of them known
    VPC fields including an address. Unknown names (newer fields) are carried along."""
    tokens = line.split()
    names = [t.replace("_", "-") for t in tokens]
    if (len(tokens) >= 2 and all(_NAME.match(t) for t in tokens)
            and sum(n in KNOWN_FIELDS for n in names) >= 2
            and any(n in ADDRESS_FIELDS for n in names)):
        return tokens
    return None


def parse_fields(spec: str) -> list[str]:
    """--vpc-fields: field names separated by spaces or commas; AWS's `${field}` format
    string and the Parquet spelling (underscores) are accepted too."""
    names = [t.replace("_", "-") for t in
             re.split(r"[\s,]+", spec.replace("${", " ").replace("}", " ").strip()) if t]
    bad = [n for n in names if not _NAME.match(n)]
    if not names or bad:
        raise InputError("--vpc-fields", f"not a list of flow log field names: {spec!r}")
    unknown = [n for n in names if n not in KNOWN_FIELDS]
    if len(unknown) == len(names):
        raise InputError("--vpc-fields", f"no known VPC flow log field in {spec!r}; "
                                          f"expected names like {' '.join(DEFAULT_FIELDS)}")
    return names


def _fits(line: str, fields: list[str]) -> bool:
    tokens = line.split()
    if len(tokens) != len(fields) or tokens[0].startswith(("{", "[")):
        return False
    if "version" in fields:
        return tokens[fields.index("version")] in _VERSIONS
    return True


def sniff(head: str, vpc_fields: str | None = None) -> bool:
    """A header line of VPC field names; or records: >= 14 fields, the first a version
    2-8 (or as many fields as --vpc-fields names)."""
    fields = parse_fields(vpc_fields) if vpc_fields else None  # a bad list is an error
    line = _first_line(head)
    if not line:
        return False
    if _header(line) is not None:
        return True
    if fields and _fits(line, fields):
        return True
    tokens = line.split()
    return len(tokens) >= 14 and tokens[0] in _VERSIONS


def compression(path: Path) -> str:
    with path.open("rb") as fh:
        return "gzip" if fh.read(2) == b"\x1f\x8b" else "none"


def describe(head: str, path: Path, vpc_fields: str | None = None) -> dict[str, str]:
    """fields: the field names in order; header: the header line's tokens as written
    (such lines are not records); compression: gzip|none."""
    given = parse_fields(vpc_fields) if vpc_fields else None
    header = _header(_first_line(head))
    if header is not None:
        fields = [t.replace("_", "-") for t in header]
    else:
        fields = header = given or list(DEFAULT_FIELDS)
    return {"fields": " ".join(fields), "header": " ".join(header),
            "compression": compression(path)}


# --- reading --------------------------------------------------------------------------------

def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def split_sql(col: str) -> str:
    """Fields of a line, split on runs of whitespace. Most lines have single spaces only;
    they take the cheap split, the rest the regular expression."""
    return f"""CASE WHEN contains({col}, '  ') OR contains({col}, chr(9))
                   OR contains({col}, chr(13)) OR starts_with({col}, ' ')
                   OR ends_with({col}, ' ')
              THEN regexp_extract_all({col}, '\\S+')
              ELSE string_split({col}, ' ') END"""


def keep_sql(params: dict[str, str], col: str) -> str:
    """Whether the line is a record: not blank, nor a header line (also one inside
    concatenated files). On the line, not on its fields: DuckDB inlines the split into
    every reference of a filter, and most lines are decided by the cheap tests here."""
    header = params["header"].split()
    listed = "[" + ", ".join(_sql_str(h) for h in header) + "]"
    blank = f"(ascii({col}) > 32 OR trim({col}, {_WS}) <> '')"
    not_header = (f"(NOT contains({col}, {_sql_str(header[0])}) "
                  f"OR {split_sql(col)} <> {listed})")
    return f"{blank} AND {not_header}"


def lines_sql(files: list[str], compression: str, numbered: bool) -> str:
    """The files' lines as rows (`line`; with `filename` and `lineno` when numbered). A
    line the reader cannot take (not UTF-8, over MAX_LINE) is skipped and noted
    (checks.READ_REJECTS), never the end of the file."""
    listed = "[" + ", ".join(_sql_str(f) for f in files) + "]"
    src = (f"read_csv({listed}, columns = {{'line': 'VARCHAR'}}, delim = '\\x01', "
           f"header = false, quote = '', escape = '', auto_detect = false, "
           f"max_line_size = {MAX_LINE}, compression = {_sql_str(compression)}"
           f"{READ_REJECTS}{', filename = true' if numbered else ''})")
    if not numbered:
        return src
    # The reader keeps blank lines (as NULL) and reads files in order: the k-th row of a
    # file is its line k, plus the lines skipped before it.
    return f"""(SELECT line, filename, k + (
                   SELECT count(*) FROM line_rejects j
                   WHERE j.filename = x.filename AND j.line - j.idx < x.k) AS lineno
               FROM (SELECT line, filename,
                         ordinality - min(ordinality) OVER (PARTITION BY filename) + 1 AS k
                     FROM {src} WITH ORDINALITY) x)"""


def reader(files: list[str], params: dict[str, str], numbered: bool) -> str:
    src = lines_sql(files, params.get("compression", "auto"), numbered)
    if not numbered:
        return f"(SELECT {split_sql('line')} AS f FROM {src} WHERE {keep_sql(params, 'line')})"
    return f"""(SELECT {split_sql('line')} AS f, filename, place FROM (
                   SELECT line, filename, {keep_sql(params, 'line')} AS keep,
                       'line ' || lineno AS place
                   FROM {src})
               WHERE keep)"""


# --- record and group expressions -----------------------------------------------------------

def _field(params: dict[str, str]) -> Callable[[str], str]:
    """name -> the field's expression (the first of that name), or NULL when absent."""
    fields = params["fields"].split()
    return lambda n: f"f[{fields.index(n) + 1}]" if n in fields else "NULL::VARCHAR"


DUPLICATE_REASON = vpc.DUPLICATE_REASON
BENIGN_REASONS = vpc.BENIGN_REASONS


def observation_point(params: dict[str, str]) -> str | None:
    """As for the Parquet delivery: counted once when recorded at both interfaces."""
    return "r_flow_dir" if "flow-direction" in params["fields"].split() else None


def raw_columns(params: dict[str, str]) -> dict[str, str]:
    """name -> expression over the split fields `f`, evaluated per record."""
    fields = params["fields"].split()
    c = _field(params)
    return {
        "r_src": c("srcaddr"),
        "r_dst": c("dstaddr"),
        "r_pkt_src": c("pkt-srcaddr"),
        "r_pkt_dst": c("pkt-dstaddr"),
        "src_port": port_sql(c("srcport")) if "srcport" in fields else "NULL::INTEGER",
        "dst_port": port_sql(c("dstport")) if "dstport" in fields else "NULL::INTEGER",
        "r_proto": c("protocol"),
        "r_action": vpc.code_sql(c("action") if "action" in fields else None, vpc.ACTIONS),
        "r_status": vpc.code_sql(c("log-status") if "log-status" in fields else None,
                                 vpc.STATUSES),
        "is_reply": "NULL::BOOLEAN",
        "tcp_flags": f"TRY_CAST({c('tcp-flags')} AS INTEGER)",
        "r_bad_fields": f"CASE WHEN len(f) <> {len(fields)} THEN 'wrong number of fields (' "
                        f"|| len(f) || ', expected {len(fields)})' END",
        **({"r_flow_dir": c("flow-direction")} if "flow-direction" in fields else {}),
    }


def measures(params: dict[str, str]) -> dict[str, str]:
    c = _field(params)
    fields = params["fields"].split()

    def strict(name: str, to: Callable[[str], str], absent: str) -> str:
        return to(c(name)) if name in fields else absent

    return {
        "packets": strict("packets", counter_sql, "NULL::BIGINT"),
        "bytes": strict("bytes", counter_sql, "NULL::BIGINT"),
        "t_start": strict("start", epoch_sql, "NULL::DOUBLE"),
        "t_end": strict("end", epoch_sql, "NULL::DOUBLE"),
    }


def post_columns() -> dict[str, str]:
    """As for the Parquet delivery, after the field-count check."""
    post = vpc.post_columns()
    post["skip_reason"] = f"coalesce(r_bad_fields, {post['skip_reason']})"
    return post
