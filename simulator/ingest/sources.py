"""Find flow files, detect their format, and build, per group of same-shaped files, the
SQL that reads their records and groups them into tuples.

A format module (one file per format) gives:
- REQUIRED: what it expects, for the "unknown format" error;
- either matches(columns) (tabular formats: Parquet/CSV, detected by their columns), or
  sniff(head) and describe(head, path) (text formats, detected from the first 64 KiB of
  text, decompressed; describe returns the format's parameters as a str->str dict) and
  reader(files, params, numbered) (the SQL row source; when numbered, with `filename`
  and `place` columns naming where each record is). A text format may list in OPTIONS
  the run options (open_flow_sources keywords, e.g. vpc_fields) that its sniff() and
  describe() take as keyword arguments;
- raw_columns(params): cheap per-record expressions to group on. Must include src_port,
  dst_port, tcp_flags, is_reply (typed INTEGER/BOOLEAN);
- measures(params): packets, bytes, t_start, t_end (epoch seconds) per record;
- post_columns(): src_ip, dst_ip, proto, observed, skip_reason (and identity columns),
  computed once per group from the raw ones. Everything costly (string clean-up,
  verdict mapping, skip reasons) is therefore paid per group, not per record.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType

import duckdb

from ..db import saturated_sum
from ..errors import InputError
from ..errors import UnusableInput as Unusable
from ..inputs import FlowPath
from ..ipnet import IPV4_RE
from ..protocols import PROTO_NAME_SQL
from . import antrea, azure, calico, hubble, normalized, pcap, vpc, vpc_cloudwatch, vpc_text
from .checks import (
    MIXED_FAMILY_SQL,
    PORT_INVALID,
    READ_REJECTS,
    RECORD_CHECK_SQL,
    RECORD_REASON_SQL,
    family,
)
from .schema import IDENTITY_COLUMNS, NORMALIZED_REQUIRED, OPTIONAL_TEXT_COLUMNS

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz")
FORMATS: dict[str, ModuleType] = {"vpc-parquet": vpc, "normalized": normalized}
# Detected from content, in this order (the first whose sniff() accepts the head wins).
TEXT_FORMATS: dict[str, ModuleType] = {"hubble": hubble, "vpc-text": vpc_text,
                                         "vpc-cloudwatch": vpc_cloudwatch}
# Binary formats among them give sniff_bytes(raw head): checked before the text sniffers.
TEXT_FORMATS["pcap"] = pcap
TEXT_FORMATS["calico"] = calico
TEXT_FORMATS["antrea"] = antrea
TEXT_FORMATS["azure"] = azure
HEAD_BYTES = 64 * 1024
EPHEMERAL_MIN = 32768
# A text file may open with a few lines no format reads (a banner, a stray line from
# another tool): detection looks past up to this many to the first lines that parse.
SNIFF_SKIP_LINES = 3

# Columns every source's tuple query yields, in this order.
# policy_trace: which policies the dataplane says allowed or denied it (Hubble, Calico…).
# src_names/dst_names: the DNS names each address was resolved from (Hubble).
TUPLE_COLUMNS = ("skip_reason", "src_ip", "dst_ip", "sp", "dp", "proto", "observed",
                 "is_reply", "syn_ack") + IDENTITY_COLUMNS + OPTIONAL_TEXT_COLUMNS + (
                 "records", "packets", "bytes", "t_first", "t_last_start", "t_last")


# A literal NULL (optionally typed), boolean or integer: what a format's raw column is when
# the file lacks the field.
_CONSTANT = re.compile(
    r"(?i)^(?:NULL(?:::\w+)?|(?:TRY_)?CAST\(\s*NULL\s+AS\s+\w+\s*\)|true|false"
    r"|-?\d+(?:::\w+)?)$")




def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def reader_sql(kind: str, files: Iterable[str], extra: str = "", compression: str = "auto",
               rejects: bool = True) -> str:
    """Parquet, or the normalized CSV: every value read as text (the strict readers parse
    it; DuckDB's type guessing would read "0x50" as 80), a line that does not split into
    the header's columns skipped and noted (checks.READ_REJECTS). A CSV group's files
    share their columns in order, so no union by name (which rejects cannot go with)."""
    listed = "[" + ", ".join(_sql_str(f) for f in files) + "]"
    if kind == "parquet":
        return f"read_parquet({listed}, union_by_name = true{extra})"
    return (f"read_csv({listed}, header = true, delim = ',', quote = '\"', escape = '\"', "
            f"all_varchar = true, compression = {_sql_str(compression)}"
            f"{READ_REJECTS if rejects else ', ignore_errors = true'}{extra})")


# The folded ports, the TCP flags that tell a connection's sides and the record check, as
# one BIGINT a record is grouped on: hashing one key instead of four took a tenth off the
# scan of 10M records. Each field (shift, bits, offset) holds its value + offset, so that 0
# is NULL: ports PORT_INVALID .. 65535 in 17 bits, syn_ack 0-18 in 5, r_rec 1-2 in 2.
_PORT = 1 - PORT_INVALID
PACKED = {"sp": (24, 17, _PORT), "dp": (7, 17, _PORT), "syn_ack": (2, 5, 1), "r_rec": (0, 2, 0)}
PACK_SQL = " | ".join(f"(coalesce({k} + {add}, 0)::BIGINT << {shift})"
                      for k, (shift, _, add) in PACKED.items())
UNPACK_SQL = {k: f"(NULLIF((tkey >> {shift}) & {(1 << bits) - 1}, 0) - {add})::INTEGER AS {k}"
              for k, (shift, bits, add) in PACKED.items()}


def fold_sql(server_ports: Sequence[int]) -> str:
    """Fold an ephemeral client port to -1, so that a connection's records collapse into
    one tuple per direction whatever ports its clients used. Declared container ports in
    the ephemeral range are servers, never folded; neither is a port whose record's TCP
    flags say it is the server's side. (A reply flag is not trusted here: real captures
    carry wrong ones, which the direction step recognises by these folded ports.)"""
    keep = ", ".join(str(p) for p in sorted(set(server_ports))) or "-1"
    # A port outside 0-65535 (the strict readers' PORT_INVALID included) becomes
    # PORT_INVALID: a raw -1 must never pass for a folded port, nor 70000 fold away.
    return f"""
        CASE WHEN NOT (src_port BETWEEN 0 AND 65535) THEN {PORT_INVALID}
             WHEN src_port >= {EPHEMERAL_MIN} AND dst_port BETWEEN 0 AND {EPHEMERAL_MIN - 1}
                  AND coalesce(tcp_flags & 18, 0) <> 18 AND src_port NOT IN ({keep})
             THEN -1 ELSE src_port END AS sp,
        CASE WHEN NOT (dst_port BETWEEN 0 AND 65535) THEN {PORT_INVALID}
             WHEN dst_port >= {EPHEMERAL_MIN} AND src_port BETWEEN 0 AND {EPHEMERAL_MIN - 1}
                  AND coalesce(tcp_flags & 18, 0) <> 2 AND dst_port NOT IN ({keep})
             THEN -1 ELSE dst_port END AS dp,
        tcp_flags & 18 AS syn_ack"""


@dataclass(frozen=True)
class FlowSource:
    format: str
    kind: str  # parquet | csv | text
    files: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]
    # file -> what the user called it (standard input and pipes are read from a copy)
    labels: tuple[tuple[str, str], ...] = ()
    compression: str = "auto"  # of a CSV table: gzip when its name does not say so

    @property
    def module(self) -> ModuleType:
        return FORMATS.get(self.format) or TEXT_FORMATS[self.format]

    @property
    def has_float_columns(self) -> bool:
        """A Parquet source with a float column (see db.without_statistics)."""
        return self.kind == "parquet" and any(family(t) == "float" for _, t in self.columns)

    def label(self, file: str) -> str:
        return dict(self.labels).get(file, file)

    @property
    def hides_snat(self) -> bool:
        """A VPC flow log without pkt-srcaddr: a pod's egress that its node masqueraded
        (source NAT) shows the node as its source."""
        raw = self.module.raw_columns(dict(self.columns))
        return "r_pkt_src" in raw and bool(_CONSTANT.match(raw["r_pkt_src"].strip()))

    def _measures_constant(self) -> bool:
        return all(_CONSTANT.match(e.strip())
                   for e in self.module.measures(dict(self.columns)).values())

    def with_proto(self, rows: str) -> str:
        """The rows with `proto`, the protocol number, computed once: the format's other
        expressions (its skip reasons) refer to it by name instead of repeating it."""
        # proto_for(columns): a format's typed protocol expression, where it has one
        typed = getattr(self.module, "proto_for", None)
        proto = typed(dict(self.columns)) if typed else self.module.post_columns()["proto"]
        return f"SELECT *, {proto} AS proto FROM ({rows})"

    def skip_sql(self) -> str:
        """Why a record (or a group of them) is skipped, or NULL: the format's own
        reasons first, then the checks every format shares."""
        post = self.module.post_columns()
        record = "NULL" if self._measures_constant() else RECORD_REASON_SQL
        mixed = MIXED_FAMILY_SQL.format(src=post["src_ip"], dst=post["dst_ip"])
        return f"coalesce({post['skip_reason']}, {record}, {mixed})"

    def reader(self, numbered: bool = False) -> str:
        """The SQL row source. numbered: with `filename` and `place` (where a record is:
        Parquet has no lines, so a 1-based record number; text formats a line)."""
        custom = getattr(self.module, "reader", None)
        if custom is not None:
            return custom(list(self.files), dict(self.columns), numbered)
        if not numbered:
            return reader_sql(self.kind, self.files, compression=self.compression)
        if self.kind == "parquet":
            r = reader_sql(self.kind, self.files, ", filename = true, file_row_number = true")
            return f"(SELECT *, 'record ' || (file_row_number + 1) AS place FROM {r})"
        r = reader_sql(self.kind, self.files, ", filename = true",
                       compression=self.compression)
        # the k-th row read is on line k + 1 (the header) + the lines skipped before it
        return f"""(SELECT * EXCLUDE (k), 'line ' || (k + 1 + (
                        SELECT count(*) FROM line_rejects j
                        WHERE j.filename = x.filename AND j.line - 1 - j.idx < x.k)) AS place
                    FROM (SELECT *, row_number() OVER (PARTITION BY filename) AS k
                          FROM {r}) x)"""

    def _rows_sql(self, server_ports: Sequence[int], numbered: bool = False) -> str:
        cols = dict(self.columns)
        raw = ",\n            ".join(f"{e} AS {n}" for n, e in {
            **self.module.raw_columns(cols), **self.module.measures(cols)}.items())
        extra = ", filename, place" if numbered else ""
        check = "NULL::TINYINT" if self._measures_constant() else RECORD_CHECK_SQL
        return f"""
        SELECT *, {PACK_SQL} AS tkey FROM (
        SELECT *, {fold_sql(server_ports)}, {check} AS r_rec FROM (
            SELECT {raw}{extra}
            FROM {self.reader(numbered)}))"""

    def tuples_sql(self, server_ports: Sequence[int], *, by_time: bool = False,
                   row_filter: str | None = None) -> str:
        """Records grouped into tuples (TUPLE_COLUMNS, plus t_start when by_time)."""
        cols = dict(self.columns)
        # CARRIED: columns a module knows to follow from the keys (e.g. an endpoint's label
        # list from its address and pod name); carried along instead of grouped on.
        carried = tuple(getattr(self.module, "CARRIED", ()))
        # observation_point(params): a raw column telling where a record was observed,
        # when the same traffic may be recorded at several points (see below)
        obs_of = getattr(self.module, "observation_point", None)
        obs = obs_of(cols) if obs_of else None
        raw = self.module.raw_columns(cols)
        raw_names = [n for n in raw
                     if n not in ("src_port", "dst_port", "tcp_flags", obs) + carried]
        # A column the file lacks is a constant: grouping on it only costs (per record)
        constants = [n for n in raw_names if _CONSTANT.match(raw[n].strip())]
        raw_names = [n for n in raw_names if n not in constants]
        post = {**self.module.post_columns(), "skip_reason": self.skip_sql()}
        # the record's small integer keys are grouped on as one (tkey), unpacked after
        keys = raw_names + list(PACKED) + (["t_start"] if by_time else [])
        group_keys = raw_names + ["tkey"] + (["t_start"] if by_time else [])
        unpacked = [UNPACK_SQL[k] if k in PACKED else k for k in keys]
        const = "".join(f"{raw[c]} AS {c}, " for c in constants)
        carry = "".join(f"any_value({c}) AS {c}, " for c in carried) + const
        where = ""
        if row_filter:
            where = "WHERE " + row_filter.format(src_ip=post["src_ip"], dst_ip=post["dst_ip"])
        select = []
        for c in TUPLE_COLUMNS:
            if c == "proto":
                select.append("proto")  # computed once, below (with_proto)
            elif c in post:
                select.append(f"{post[c]} AS {c}")
            elif c in ("sp", "dp"):
                select.append(f"coalesce({c}, 0) AS {c}")
            elif c in IDENTITY_COLUMNS or c in OPTIONAL_TEXT_COLUMNS:
                select.append(f"NULL::VARCHAR AS {c}")
            else:
                select.append(c)
        if by_time:
            select.append("t_start")
        grouped = f"""
            SELECT {', '.join(unpacked)}, {carry}{obs + ', ' if obs else ''}
                -- BIGINT, as the connections' sums are: HUGEINT costs in every join after
                -- saturating: per-record counters are bounded, their sums need not be
                count(*) AS records, {saturated_sum('packets')} AS packets,
                {saturated_sum('bytes')} AS bytes,
                min(t_start) AS t_first, max(t_start) AS t_last_start,
                max(coalesce(t_end, t_start)) AS t_last
            FROM ({self._rows_sql(server_ports)}) rows
            {where}
            GROUP BY {', '.join(group_keys + ([obs] if obs else []))}"""
        if not obs:
            return f"SELECT {', '.join(select)} FROM ({self.with_proto(grouped)})"
        # A source that reports one packet at several observation points: per tuple, the
        # busiest point's count is the packets; the other sightings are duplicates.
        carry_any = "".join(f"any_value({c}) AS {c}, " for c in carried)
        nulls = ", ".join(
            "skip_reason" if c == "skip_reason" else
            "dups AS records" if c == "records" else
            f"NULL AS {c}" for c in TUPLE_COLUMNS) + (", NULL AS t_start" if by_time else "")
        return f"""
        WITH points AS ({grouped}),
        merged AS (
            SELECT {', '.join(keys)}, {carry_any}{const}
                max(records) AS records, max(packets) AS packets, max(bytes) AS bytes,
                min(t_first) AS t_first, max(t_last_start) AS t_last_start,
                max(t_last) AS t_last, sum(records) - max(records) AS dups
            FROM points GROUP BY {', '.join(keys)}
        )
        SELECT {', '.join(select)} FROM ({self.with_proto('SELECT * FROM merged')})
        UNION ALL
        SELECT {nulls} FROM (
            SELECT '{self.module.DUPLICATE_REASON}' AS skip_reason, sum(dups) AS dups
            FROM merged HAVING sum(dups) > 0)"""

    def records_sql(self) -> str:
        """Every record that is not skipped, in the normalized flow schema (FLOW_SCHEMA):
        what --save-flows writes, so that a capture is parsed once and replayed often."""
        post = self.module.post_columns()
        identity = ", ".join(f"{post.get(c, 'NULL::VARCHAR')} AS {c}"
                             for c in IDENTITY_COLUMNS + OPTIONAL_TEXT_COLUMNS)
        return f"""
        SELECT to_timestamp(t_start) AS start_time, to_timestamp(t_end) AS end_time,
            {post['src_ip']} AS src_ip, {post['dst_ip']} AS dst_ip,
            src_port, dst_port, {PROTO_NAME_SQL.format(col="proto")} AS protocol,
            packets, bytes, {post['observed']} AS verdict, is_reply, tcp_flags, {identity}
        FROM ({self.with_proto(self._rows_sql([]))})
        WHERE ({self.skip_sql()}) IS NULL"""

    def examples_sql(self, server_ports: Sequence[int], with_rows: bool = False) -> str:
        """(filename, place, reason) of every record, for naming skipped ones; with_rows:
        with the record's raw columns too (for reasons found after grouping)."""
        cols = "*, " if with_rows else "filename, place, "
        return (f"SELECT {cols}{self.skip_sql()} AS reason "
                f"FROM ({self.with_proto(self._rows_sql(server_ports, numbered=True))})")


def _head_bytes(path: Path, label: str) -> bytes:
    """The first HEAD_BYTES of the file's content, decompressed when it is gzip."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(HEAD_BYTES)
    except OSError as e:
        raise Unusable(label, f"cannot read: {e.strerror or e}") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        with gzip.open(path, "rb") as gz:
            raw = gz.read(HEAD_BYTES)
    except (OSError, EOFError, zlib.error) as e:
        if isinstance(e, EOFError) or "truncated" in str(e).lower():
            why = "truncated gzip stream"
        else:
            why = f"corrupt gzip stream ({e})"
        raise Unusable(label, why) from None
    if not raw:
        raise Unusable(label, "empty file (a gzip stream of nothing)")
    return raw


def _text_head(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace")
    return text[1:] if text.startswith("\ufeff") else text  # a UTF-8 byte-order mark


def _after_lines(head: str, n: int) -> str | None:
    """The head without its first n non-blank lines (None when there are not that many
    and more lines after them)."""
    lines = head.splitlines(keepends=True)
    dropped = 0
    for i, line in enumerate(lines):
        if dropped == n:
            rest = "".join(lines[i:])
            return rest if rest.strip() else None
        if line.strip():
            dropped += 1
    return None


def _sniff_text(head: str, path: Path, label: str, forced: str | None,
                options: dict[str, str]) -> tuple[str, dict[str, str]]:
    def opts_of(module: ModuleType) -> dict[str, str]:
        return {k: v for k, v in options.items() if k in getattr(module, "OPTIONS", ())}

    if forced is not None:
        module = TEXT_FORMATS[forced]
        try:
            return forced, module.describe(head, path, **opts_of(module))
        except RecursionError:
            raise Unusable(label, "JSON nested too deep to be a flow record") from None
    # the first lines that parse decide: a stray first line is then one skipped record
    for skip in range(SNIFF_SKIP_LINES + 1):
        h = head if skip == 0 else _after_lines(head, skip)
        if h is None:
            break
        for fmt, module in TEXT_FORMATS.items():
            try:
                matched = module.sniff(h, **opts_of(module))
            except RecursionError:  # JSON nested thousands deep: no format of ours
                matched = False
            if matched:
                return fmt, module.describe(h, path, **opts_of(module))
    hint = ""
    first = next((line.split() for line in head.splitlines() if line.strip()), [])
    if len(first) >= 4 and any(re.fullmatch(IPV4_RE, t) for t in first):
        hint = "; a VPC flow log in a custom format? give its fields with --vpc-fields"
    raise Unusable(label, "unknown flow file format (simulate --help lists the formats; "
                          f"--flows-format forces one){hint}")


# The column types that can hold each value of a flow table; any other (a struct, a list,
# a map, a boolean, an integer address, a date port) holds none, in any record.
_TEXT, _NUMBER, _TIME = {"text"}, {"text", "int", "float"}, {"text", "int", "float", "time"}
_ALLOWED = {
    **dict.fromkeys(("srcaddr", "dstaddr", "pkt_srcaddr", "pkt_dstaddr", "src_ip", "dst_ip"),
                    (_TEXT, "an address")),
    **dict.fromkeys(("srcport", "dstport", "src_port", "dst_port", "protocol", "packets",
                     "bytes", "tcp_flags"), (_NUMBER, "a number")),
    **dict.fromkeys(("start", "end", "start_time", "end_time"), (_TIME, "a time")),
}


def _check_column_types(label: str, columns: dict[str, str]) -> None:
    for name, (allowed, what) in _ALLOWED.items():
        t = columns.get(name)
        if t is None:
            continue
        fam = "time" if t.upper().startswith(("TIMESTAMP", "DATE")) else family(t)
        if fam not in allowed:
            raise Unusable(label, f"column {name} has type {t}, which cannot hold {what} "
                                  "of a flow record")


def _csv_table_head(head: str) -> bool:
    """A CSV table by its content (a pipe or a name without .csv): a header line of
    comma-separated names that holds the normalized table's required columns."""
    first = next((line for line in head.splitlines() if line.strip()), "")
    names = {n.strip().strip('"').lower() for n in first.split(",")}
    return set(NORMALIZED_REQUIRED) <= names


def _describe(con: duckdb.DuckDBPyConnection, fp: FlowPath, forced: str | None,
              options: dict[str, str] | None = None
              ) -> tuple[str, str, dict[str, str], str]:
    """(format, kind, columns-or-params, compression) of one flow file; Unusable when it
    cannot be read as flows at all."""
    path, label = fp.path, fp.label
    if fp.problem:
        raise Unusable(label, fp.problem)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as e:
        raise Unusable(label, f"cannot read: {e.strerror or e}") from None
    if size == 0:
        raise Unusable(label, "empty file")
    name = path.name.lower()
    compression = "gzip" if magic[:2] == b"\x1f\x8b" else "none"
    if magic == b"PAR1" or (name.endswith(PARQUET_SUFFIXES) and forced not in TEXT_FORMATS):
        kind = "parquet"
    else:
        raw = _head_bytes(path, label)
        text = _text_head(raw)
        if forced in FORMATS or (forced not in TEXT_FORMATS and (
                (name.endswith(CSV_SUFFIXES) and not antrea.is_headless_csv(path))  # Antrea:
                or _csv_table_head(text))):                                     # no header
            kind = "csv"
            if not raw.strip():
                raise Unusable(label, "empty file (blank lines only)")
        else:
            for fmt, module in TEXT_FORMATS.items():
                sniff_bytes = getattr(module, "sniff_bytes", None)
                if forced is None and sniff_bytes is not None and sniff_bytes(raw):
                    forced = fmt
                    break
            if forced is None and not raw.strip(b" \t\r\n\x00\xef\xbb\xbf"):
                raise Unusable(label, "empty file (blank lines only)")
            try:
                fmt, params = _sniff_text(text, path, label, forced, options or {})
            except InputError as e:
                if e.path != str(path):
                    raise
                # a format's own reader named the file it read (maybe a copy of a stream)
                raise (Unusable if isinstance(e, Unusable) else InputError)(
                    label, e.message, e.where) from None
            return fmt, "text", params, compression
    try:
        table = reader_sql(kind, [str(path)], compression=compression, rejects=False)
        rows = con.execute(f"DESCRIBE SELECT * FROM {table}").fetchall()
    except duckdb.OutOfMemoryException:
        raise
    except duckdb.Error as e:
        first = str(e).strip().splitlines()[0]
        raise Unusable(label, f"not a readable {kind.upper()} file: {first}") from None
    columns = {str(r[0]).lower(): str(r[1]) for r in rows}
    fmt = detect(label, columns, forced)
    _check_column_types(label, columns)
    return fmt, kind, columns, compression


def detect(path: Path | str, columns: dict[str, str], forced: str | None = None) -> str:
    for name, module in FORMATS.items():
        if forced in (None, name) and module.matches(columns):
            return name
    shown = ", ".join(sorted(columns)[:6]) + (", …" if len(columns) > 6 else "")
    raise Unusable(path, f"unknown flow table (columns: {shown}); a flow table has "
                         "srcaddr, dstaddr, dstport, protocol, start (AWS VPC) or start_time, "
                         "src_ip, dst_ip, dst_port, protocol (normalized)")


def any_float(sources: Iterable[FlowSource]) -> bool:
    return any(s.has_float_columns for s in sources)


def format_names() -> list[str]:
    return list(FORMATS) + list(TEXT_FORMATS)


@dataclass
class OpenedFlows:
    sources: list[FlowSource]
    # files found in a directory or glob that could not be used: {"file", "reason"}
    skipped_files: list[dict[str, str]] = field(default_factory=list)
    # the files read that were named on their own (judged strictly), not found in a
    # directory or glob
    named: set[str] = field(default_factory=set)

    def without(self, file: str, reason: str) -> OpenedFlows:
        """The flows with one file found unreadable late (a gzip stream cut short)
        listed as skipped instead."""
        sources = []
        for s in self.sources:
            files = tuple(f for f in s.files if f != file)
            if files:
                sources.append(replace(s, files=files, labels=tuple(
                    (f, label) for f, label in s.labels if f != file)))
        label = next((s.label(file) for s in self.sources if file in s.files), file)
        return OpenedFlows(sources, [*self.skipped_files, {"file": label, "reason": reason}],
                           self.named)


def open_flow_sources(con: duckdb.DuckDBPyConnection, paths: Iterable[FlowPath],
                      forced: str | None = None,
                      spool_dir: str | None = None,
                      vpc_fields: str | None = None) -> OpenedFlows:
    """Detect every flow file's format and group same-shaped files. vpc_fields: the field
    list of VPC flow log text without a header line."""
    if forced is not None and forced not in format_names():
        raise InputError("--flows-format", f"unknown format {forced!r}; expected one of "
                                           f"{', '.join(format_names())}")
    options = {"vpc_fields": vpc_fields} if vpc_fields else {}
    if spool_dir:
        options["spool_dir"] = spool_dir
    Group = tuple[str, str, tuple[tuple[str, str], ...], str]
    groups: dict[Group, list[FlowPath]] = {}
    skipped: list[dict[str, str]] = []
    for fp in paths:
        try:
            fmt, kind, columns, compression = _describe(con, fp, forced, options)
        except Unusable as e:
            if fp.named:
                raise
            skipped.append({"file": fp.label, "reason": e.message})
            continue
        # a CSV group is read without union by name: its files share column order too
        cols = tuple(columns.items()) if kind == "csv" else tuple(sorted(columns.items()))
        key = (fmt, kind, cols, compression if kind == "csv" else "auto")
        groups.setdefault(key, []).append(fp)
    return OpenedFlows([FlowSource(fmt, kind, tuple(str(f.path) for f in fps), cols,
                                   tuple((str(f.path), f.label) for f in fps), compression)
                        for (fmt, kind, cols, compression), fps in groups.items()], skipped,
                       {str(f.path) for fps in groups.values() for f in fps if f.named})
