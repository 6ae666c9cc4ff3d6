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

import glob
import gzip
import re
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import duckdb

from ..errors import InputError
from ..protocols import PROTO_NAME_SQL
from . import antrea, azure, calico, hubble, normalized, pcap, vpc, vpc_cloudwatch, vpc_text
from .schema import IDENTITY_COLUMNS

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

# Columns every source's tuple query yields, in this order.
# policy_trace: which policies the dataplane says allowed or denied it (Hubble, Calico…).
TUPLE_COLUMNS = ("skip_reason", "src_ip", "dst_ip", "sp", "dp", "proto", "observed",
                 "is_reply", "syn_ack") + IDENTITY_COLUMNS + (
                 "policy_trace", "records", "packets", "bytes", "t_first", "t_last_start", "t_last")


# A literal NULL (optionally typed) or boolean: what a format's raw column is when the file
# lacks the field.
_CONSTANT = re.compile(
    r"(?i)^(?:NULL(?:::\w+)?|(?:TRY_)?CAST\(\s*NULL\s+AS\s+\w+\s*\)|true|false)$")


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def reader_sql(kind: str, files: Iterable[str], extra: str = "") -> str:
    listed = "[" + ", ".join(_sql_str(f) for f in files) + "]"
    if kind == "parquet":
        return f"read_parquet({listed}, union_by_name = true{extra})"
    return f"read_csv({listed}, header = true, union_by_name = true{extra})"


def fold_sql(server_ports: Sequence[int]) -> str:
    """Fold an ephemeral client port to -1, so that a connection's records collapse into
    one tuple per direction whatever ports its clients used. Declared container ports in
    the ephemeral range are servers, never folded; neither is a port whose record's TCP
    flags say it is the server's side. (A reply flag is not trusted here: real captures
    carry wrong ones, which the direction step recognises by these folded ports.)"""
    keep = ", ".join(str(p) for p in sorted(set(server_ports))) or "-1"
    return f"""
        CASE WHEN src_port >= {EPHEMERAL_MIN} AND dst_port < {EPHEMERAL_MIN}
                  AND coalesce(tcp_flags & 18, 0) <> 18 AND src_port NOT IN ({keep})
             THEN -1 ELSE src_port END AS sp,
        CASE WHEN dst_port >= {EPHEMERAL_MIN} AND src_port < {EPHEMERAL_MIN}
                  AND coalesce(tcp_flags & 18, 0) <> 2 AND dst_port NOT IN ({keep})
             THEN -1 ELSE dst_port END AS dp,
        tcp_flags & 18 AS syn_ack"""


@dataclass(frozen=True)
class FlowSource:
    format: str
    kind: str  # parquet | csv
    files: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]

    @property
    def module(self) -> ModuleType:
        return FORMATS.get(self.format) or TEXT_FORMATS[self.format]

    def reader(self, numbered: bool = False) -> str:
        """The SQL row source. numbered: with `filename` and `place` (where a record is:
        Parquet has no lines, so a 1-based record number; text formats a line)."""
        custom = getattr(self.module, "reader", None)
        if custom is not None:
            return custom(list(self.files), dict(self.columns), numbered)
        if not numbered:
            return reader_sql(self.kind, self.files)
        if self.kind == "parquet":
            r = reader_sql(self.kind, self.files, ", filename = true, file_row_number = true")
            return f"(SELECT *, 'record ' || (file_row_number + 1) AS place FROM {r})"
        r = reader_sql(self.kind, self.files, ", filename = true")
        return (f"(SELECT *, 'line ' || (row_number() OVER (PARTITION BY filename) + 1) "
                f"AS place FROM {r})")

    def _rows_sql(self, server_ports: Sequence[int], numbered: bool = False) -> str:
        cols = dict(self.columns)
        raw = ",\n            ".join(f"{e} AS {n}" for n, e in {
            **self.module.raw_columns(cols), **self.module.measures(cols)}.items())
        extra = ", filename, place" if numbered else ""
        return f"""
        SELECT *, {fold_sql(server_ports)} FROM (
            SELECT {raw}{extra}
            FROM {self.reader(numbered)})"""

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
        post = self.module.post_columns()
        keys = raw_names + ["sp", "dp", "syn_ack"] + (["t_start"] if by_time else [])
        const = "".join(f"{raw[c]} AS {c}, " for c in constants)
        carry = "".join(f"any_value({c}) AS {c}, " for c in carried) + const
        where = ""
        if row_filter:
            where = "WHERE " + row_filter.format(src_ip=post["src_ip"], dst_ip=post["dst_ip"])
        select = []
        for c in TUPLE_COLUMNS:
            if c in post:
                select.append(f"{post[c]} AS {c}")
            elif c in ("sp", "dp"):
                select.append(f"coalesce({c}, 0) AS {c}")
            elif c in IDENTITY_COLUMNS or c == "policy_trace":
                select.append(f"NULL::VARCHAR AS {c}")
            else:
                select.append(c)
        if by_time:
            select.append("t_start")
        grouped = f"""
            SELECT {', '.join(keys)}, {carry}{obs + ', ' if obs else ''}
                -- BIGINT, as the connections' sums are: HUGEINT costs in every join after
                count(*) AS records, sum(packets)::BIGINT AS packets,
                sum(bytes)::BIGINT AS bytes,
                min(t_start) AS t_first, max(t_start) AS t_last_start,
                max(coalesce(t_end, t_start)) AS t_last
            FROM ({self._rows_sql(server_ports)}) rows
            {where}
            GROUP BY {', '.join(keys + ([obs] if obs else []))}"""
        if not obs:
            return f"SELECT {', '.join(select)} FROM ({grouped})"
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
        SELECT {', '.join(select)} FROM merged
        UNION ALL
        SELECT {nulls} FROM (
            SELECT '{self.module.DUPLICATE_REASON}' AS skip_reason, sum(dups) AS dups
            FROM merged HAVING sum(dups) > 0)"""

    def records_sql(self) -> str:
        """Every record that is not skipped, in the normalized flow schema (FLOW_SCHEMA):
        what --save-flows writes, so that a capture is parsed once and replayed often."""
        post = self.module.post_columns()
        identity = ", ".join(f"{post.get(c, 'NULL::VARCHAR')} AS {c}"
                             for c in IDENTITY_COLUMNS + ("policy_trace",))
        return f"""
        SELECT to_timestamp(t_start) AS start_time, to_timestamp(t_end) AS end_time,
            {post['src_ip']} AS src_ip, {post['dst_ip']} AS dst_ip,
            src_port, dst_port, {PROTO_NAME_SQL.format(col=f"({post['proto']})")} AS protocol,
            packets, bytes, {post['observed']} AS verdict, is_reply, tcp_flags, {identity}
        FROM ({self._rows_sql([])})
        WHERE ({post['skip_reason']}) IS NULL"""

    def examples_sql(self, server_ports: Sequence[int]) -> str:
        """(filename, place, reason) of every record, for naming skipped ones."""
        reason = self.module.post_columns()["skip_reason"]
        return (f"SELECT filename, place, {reason} AS reason "
                f"FROM ({self._rows_sql(server_ports, numbered=True)})")


def _expand(paths: Iterable[str], spool_dir: str | None) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if raw == "-":
            files.append(_spool_stdin(spool_dir))
        elif p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file()
                           and not f.name.startswith("."))
            if not found:
                raise InputError(p, "--flows: directory holds no files")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        elif any(ch in raw for ch in "*?["):
            matched = sorted(Path(m) for m in glob.glob(raw, recursive=True))
            if not matched:
                raise InputError(raw, "--flows: pattern matches no file")
            files.extend(m for m in matched if m.is_file())
        else:
            raise InputError(p, "--flows: no such file or directory")
    return files


def _spool_stdin(spool_dir: str | None) -> Path:
    """Standard input is read more than once (grouping, then examples of skipped records),
    so it is copied to a file first."""
    import tempfile

    fd, name = tempfile.mkstemp(prefix="stdin-", suffix=".flows", dir=spool_dir)
    with open(fd, "wb") as out:
        shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
    return Path(name)


def _head_bytes(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            raw = fh.read(HEAD_BYTES)
        if raw[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as gz:
                raw = gz.read(HEAD_BYTES)
    except (OSError, EOFError) as e:
        raise InputError(path, f"cannot read: {e}") from None
    return raw


def _describe(con: duckdb.DuckDBPyConnection, path: Path, forced: str | None,
              options: dict[str, str] | None = None) -> tuple[str, str, dict[str, str]]:
    """(format, kind, columns-or-params) of one flow file."""
    name = path.name.lower()
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic == b"PAR1" or (name.endswith(PARQUET_SUFFIXES) and forced not in TEXT_FORMATS):
        kind = "parquet"
    elif (name.endswith(CSV_SUFFIXES) and forced not in TEXT_FORMATS
          and not antrea.is_headless_csv(path)):  # Antrea's flowLogger CSV: no header
        kind = "csv"
    else:
        raw = _head_bytes(path)
        head = raw.decode("utf-8", errors="replace")
        for fmt, module in TEXT_FORMATS.items():
            sniff_bytes = getattr(module, "sniff_bytes", None)
            if forced is None and sniff_bytes is not None and sniff_bytes(raw):
                forced = fmt
                break
        for fmt, module in TEXT_FORMATS.items():
            opts = {k: v for k, v in (options or {}).items()
                    if k in getattr(module, "OPTIONS", ())}
            if forced == fmt or (forced is None and module.sniff(head, **opts)):
                return fmt, "text", module.describe(head, path, **opts)
        expected = "; ".join(f"{n}: {m.REQUIRED}" for n, m in TEXT_FORMATS.items())
        raise InputError(path, "unknown flow file format: expected Parquet or CSV flow "
                               f"tables, or one of — {expected}" if expected else
                               "unknown flow file format: expected AWS VPC flow logs in "
                               "Parquet or a normalized flow table (.parquet or .csv)")
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {reader_sql(kind, [str(path)])}").fetchall()
    except duckdb.Error as e:
        first = str(e).strip().splitlines()[0]
        raise InputError(path, f"not a readable {kind.upper()} file: {first}") from None
    columns = {str(r[0]).lower(): str(r[1]) for r in rows}
    return detect(path, columns, forced), kind, columns


def detect(path: Path, columns: dict[str, str], forced: str | None = None) -> str:
    for name, module in FORMATS.items():
        if forced in (None, name) and module.matches(columns):
            return name
    expected = "; ".join(f"{n}: {', '.join(m.REQUIRED)}" for n, m in FORMATS.items())
    raise InputError(path, f"unknown flow schema (columns: {', '.join(sorted(columns))}); "
                           f"expected the columns of one of — {expected}")


def format_names() -> list[str]:
    return list(FORMATS) + list(TEXT_FORMATS)


def open_flow_sources(con: duckdb.DuckDBPyConnection, paths: Iterable[str],
                      forced: str | None = None,
                      spool_dir: str | None = None,
                      vpc_fields: str | None = None) -> list[FlowSource]:
    """vpc_fields: the field list of VPC flow log text without a header line."""
    if forced is not None and forced not in format_names():
        raise InputError("--flows-format", f"unknown format {forced!r}; expected one of "
                                           f"{', '.join(format_names())}")
    options = {"vpc_fields": vpc_fields} if vpc_fields else {}
    if spool_dir:
        options["spool_dir"] = spool_dir
    groups: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[str]] = {}
    for path in _expand(paths, spool_dir):
        fmt, kind, columns = _describe(con, path, forced, options)
        groups.setdefault((fmt, kind, tuple(sorted(columns.items()))), []).append(str(path))
    return [FlowSource(fmt, kind, tuple(files), cols)
            for (fmt, kind, cols), files in groups.items()]
