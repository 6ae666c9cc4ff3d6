"""One simulation run: ingest -> resolve -> evaluate -> diff. Outputs read `result`."""

from __future__ import annotations

import gc
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from . import catalog, cni, connections, db, diff, evaluate, ipnet, manifests, near_miss, scratch
from .accounting import account, evaluated_records
from .caveats import collect_warnings, nothing_to_judge
from .cluster import Cluster
from .errors import InputError
from .ingest import open_flow_sources
from .ingest.sources import EPHEMERAL_MIN, any_float
from .inputs import expand_flow_paths
from .ipnet import parse_cidr
from .manifests import PendingManifests
from .output.files import atomic_output
from .policy.loader import PolicySet
from .policy.services import bind_services
from .policy.tables import register_policy_tables
from .progress import Progress
from .summary import build_summary


@dataclass
class Options:
    flows: list[str]
    policies: list[str]
    cluster: list[str] = field(default_factory=list)
    baseline: list[str] = field(default_factory=list)
    pod_cidrs: list[str] = field(default_factory=list)
    flows_format: str | None = None
    save_flows: str | None = None
    vpc_fields: str | None = None
    memory_limit: str = "1500MB"
    temp_dir: str | None = None
    threads: int | None = None
    quiet: bool = True
    # Cilium's cluster name, where the snapshot holds no cilium-config ConfigMap
    cilium_cluster_name: str = "default"
    # the CNI profile (cni.py); None: inferred from the flows
    cni: str | None = None
    # reports will be written: the rule usage they read (evaluate.record_usage) is taken
    # beside the result table instead of when the first report asks for it
    reports: bool = False


@dataclass
class Result:
    con: duckdb.DuckDBPyConnection
    summary: dict[str, Any]
    candidate: PolicySet | None = None
    baseline: PolicySet | None = None
    _tmp: str | None = None

    @property
    def work_dir(self) -> str | None:
        """The run's own temporary directory (removed when the run closes)."""
        return self._tmp

    def connections(self) -> pa.Table:
        return db.arrow(self.con, "SELECT * FROM result_public")

    def close(self, fast: bool = False) -> None:
        """fast: the process is about to end; only what outlives it (the temporary
        directory) is cleaned up. The run stays referenced until then: dropping the last
        reference would tear DuckDB's tables and the manifests' objects down (0.09 s at
        10M flows) just before the process ends and the OS frees them at once."""
        if not fast:
            gc.unfreeze()
            self.con.close()
        else:
            _ENDING.append(self)
        if self._tmp:
            scratch.remove(self._tmp)


# Runs closed with fast=True, kept until the process ends (see Result.close)
_ENDING: list[Result] = []


def _run_dir(opts: Options) -> str:
    """The run's own directory (in --temp-dir when given): spilled data, copies of streams
    and converted captures live there, and all of it goes when the run ends."""
    try:
        return scratch.make("netpol-simulator-", opts.temp_dir)
    except OSError as e:
        raise InputError(opts.temp_dir or tempfile.gettempdir(),
                         f"--temp-dir: cannot create a directory there: {e.strerror or e}"
                         ) from None


def _connect(opts: Options, tmp: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"memory_limit": opts.memory_limit,
                                 "temp_directory": tmp,
                                 "preserve_insertion_order": False})
    # On a terminal, DuckDB's own bar shows how far a long scan is; elsewhere it stays off
    # (it would write into logs and notebooks).
    show = not opts.quiet and sys.stderr.isatty() and sys.stdout.isatty()
    db.run(con, f"SET enable_progress_bar = {str(show).lower()}")
    if opts.threads:
        db.run(con, f"SET threads = {int(opts.threads)}")
    ipnet.register(con)
    return con


def save_flows(con: duckdb.DuckDBPyConnection, sources: list[Any], path: str) -> None:
    """Write every ingested record in the normalized flow schema (Parquet)."""
    if not path.lower().endswith((".parquet", ".pq")):
        raise InputError("--save-flows", f"{path}: the normalized flows are written as "
                                         "Parquet; use a .parquet name")
    union = "\nUNION ALL\n".join(s.records_sql() for s in sources)
    with atomic_output(path) as tmp, db.without_statistics(con, any_float(sources)):
        target = str(tmp).replace("'", "''")
        db.run(con, f"COPY ({union}) TO '{target}' (FORMAT parquet)")


def _check_cidrs(cidrs: list[str]) -> None:
    for c in cidrs:
        try:
            parse_cidr(c)
        except ValueError:
            raise InputError("--pod-cidr", f"not a CIDR: {c!r}") from None


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _failed_file(sources: list[Any], e: Exception) -> str | None:
    """The file DuckDB's message names, if it names one of ours."""
    return next((f for s in sources for f in s.files if f in str(e)), None)


def _read_error(sources: list[Any], e: Exception) -> Exception:
    """A file DuckDB could not read to its end (a truncated gzip stream): named when
    DuckDB's message names it. Running out of memory is no fault of a file: passed on."""
    if isinstance(e, duckdb.OutOfMemoryException):
        return e
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    for s in sources:
        for f in s.files:
            if f in str(e):
                return InputError(s.label(f), f"cannot read flows: {text.replace(f, s.label(f))}")
    files = ", ".join(s.label(f) for s in sources for f in s.files)
    return InputError(files, f"cannot read flows: {text}")


def run(opts: Options, pending: PendingManifests | None = None,
        write: Callable[[duckdb.DuckDBPyConnection], None] | None = None) -> Result:
    """The run; `pending`: its manifests, if manifests.start_reading() was called earlier
    (before DuckDB starts its threads). `write(cursor)`: an output that reads only the
    result table, written while the summary is built (the run waits for it)."""
    progress = Progress(not opts.quiet)
    tmp: str | None = None
    con = early = None
    try:
        try:
            _check_cidrs(opts.pod_cidrs)
            if pending is None:
                pending = manifests.start_reading(opts.policies, opts.baseline or None,
                                                  opts.cluster)
            try:
                tmp = _run_dir(opts)
            except InputError:
                pending.result()  # a bad manifest is reported first, as it always was
                raise
            con = _connect(opts, tmp)
            early = _EarlyScan(con, tmp, opts)
            with progress.phase("loading policies and cluster snapshot"), manifests.no_gc():
                candidate, baseline, cluster = pending.result(on_cluster=early.start)
                # The manifests' millions of objects live as long as the run: kept out of
                # the collector's sight before it comes back (its first pass would walk
                # them all), every later Python step stops paying to walk them again.
                gc.freeze()
        finally:
            if pending is not None:
                pending.close()
        return _run(con, tmp, opts, progress, candidate, baseline, cluster, early, write)
    except BaseException:  # a signal included: the run's directory never outlives it
        try:
            if early is not None:
                early.stop()
            gc.unfreeze()
            if con is not None:
                con.close()
        finally:
            if tmp is not None:
                scratch.remove(tmp)
        raise


def _server_ports(cluster: Cluster) -> list[int]:
    """Ports in the ephemeral range that pods declare: never folded as a client's."""
    return [cp.port for p in cluster.pods for cp in p.ports if cp.port >= EPHEMERAL_MIN]


class _EarlyScan:
    """The flow records' scan, started as soon as the cluster snapshot is read (it needs
    the snapshot's declared ports, nothing else) while workers still parse the policies.
    Not on a terminal that shows DuckDB's progress bar: there the scan starts in turn, with
    its bar. A flow file that cannot be opened is reported after the manifests are read,
    so that a bad manifest is still the first error named."""

    def __init__(self, con: duckdb.DuckDBPyConnection, tmp: str, opts: Options) -> None:
        self.con, self.tmp, self.opts = con, tmp, opts
        self.opened: Any = None
        self.error: Exception | None = None
        self.scan: db.Background | None = None

    def start(self, cluster: Cluster) -> None:
        if self.opts.save_flows or db.one(self.con, "SELECT current_setting("
                                                    "'enable_progress_bar')")[0]:
            return
        try:
            self.opened = _open_flows(self.con, self.tmp, self.opts)
        except Exception as e:  # raised in turn, after the manifests
            self.error = e
            return
        sources, ports = self.opened.sources, _server_ports(cluster)
        if sources:
            self.scan = db.start(self.con,
                                 lambda cur: connections.build_tuples(cur, sources, ports))

    def take(self) -> db.Background | None:
        scan, self.scan = self.scan, None
        return scan

    def stop(self) -> None:
        if self.scan is not None:
            self.take().stop()


def _open_flows(con: duckdb.DuckDBPyConnection, tmp: str, opts: Options) -> Any:
    return open_flow_sources(con, expand_flow_paths(opts.flows, tmp), opts.flows_format,
                             tmp, opts.vpc_fields)


def cilium_cluster_name(cluster: Cluster, opts: Options) -> str:
    """The cluster's name as Cilium labels every pod with it: cilium-config's, else the
    option's."""
    return (cluster.cilium_config or {}).get("cluster-name") or opts.cilium_cluster_name


def _run(con: duckdb.DuckDBPyConnection, tmp: str, opts: Options, progress: Progress,
         candidate: PolicySet, baseline: PolicySet | None, cluster: Cluster,
         early: _EarlyScan,
         write: Callable[[duckdb.DuckDBPyConnection], None] | None = None) -> Result:
    idents = catalog.Identities()
    # detection; captures are parsed here (into the normalized form the SQL path reads)
    with progress.phase("opening flow files") as note:
        if early.error is not None:
            raise early.error
        opened = early.opened if early.opened is not None else _open_flows(con, tmp, opts)
        sources = opened.sources
        note["done"] = ", ".join(f"{len(s.files)} {s.format}" for s in sources)
    if not sources:
        raise nothing_to_judge([], [], opened.skipped_files)
    if opts.save_flows:
        with progress.phase("saving normalized flows"):
            try:
                save_flows(con, sources, opts.save_flows)
            except duckdb.Error as e:  # a flow file that cannot be read to its end
                raise _read_error(sources, e) from None
    catalog.register_cluster(con, cluster, opts.pod_cidrs, idents)
    server_ports = _server_ports(cluster)
    with progress.phase("reading flows") as note:
        while True:
            try:
                scan = early.take()
                if scan is not None:
                    scan.wait()
                else:
                    connections.build_tuples(con, sources, server_ports)
                break
            except duckdb.Error as e:
                # a file that fails only past its head (a gzip stream cut short): named
                # on its own it ends the run; found in a directory it is listed, and the
                # scan runs again without it
                error = _read_error(sources, e)
                failed = _failed_file(sources, e)
                if failed is None or failed in opened.named:
                    raise error from None
                opened = opened.without(failed, f"cannot be read to its end: "
                                                f"{_first_line(e)}")
                sources = opened.sources
                if not sources:
                    raise nothing_to_judge([], [], opened.skipped_files) from None
        n = db.one(con, "SELECT sum(records), count(*) FROM tuples")
        note["done"] = f"{int(n[0] or 0):,} records, {int(n[1] or 0):,} tuples"
        note["count"] = int(n[0] or 0)
    with progress.phase("resolving endpoints") as note:
        bad_label_pods = catalog.register_flow_pods(con, idents)
        catalog.register_identities(con, idents, cilium_cluster_name(cluster, opts))
        resplit = connections.resolve(con, sources, server_ports)
        connections.orient(con)
        n = db.one(con, "SELECT count(*) FROM conns")
        note["done"] = f"{int(n[0]):,} connections"
    accounting = account(con, sources, server_ports)
    if not evaluated_records(con):
        raise nothing_to_judge(*accounting, opened.skipped_files)
    name, inferred_from = ((opts.cni, None) if opts.cni
                           else cni.infer([s.format for s in sources],
                                               cluster.cilium_config is not None))
    profile, agent = cni.agent_config(cni.profile(name), cluster.cilium_config)
    with progress.phase("evaluating policies"):
        for pset in (candidate, baseline):
            if pset is not None:
                pset.policies, notes = bind_services(pset.policies, cluster)
                pset.notes += notes
                # kinds the dataplane does not enforce decide nothing
                pset.policies, pset.not_enforced = cni.split_enforced(pset.policies, profile)
        sets = [("candidate", candidate.policies)]
        if baseline is not None:
            sets.append(("baseline", baseline.policies))
        register_policy_tables(con, sets)
        cni.configure(con, profile)
        evaluate.evaluate(con, [name for name, _ in sets])
        cni.apply_enforcement(con, profile)
        near_miss.create(con)
        # the near misses and, for reports, what each rule was used for, while the result
        # table is built from the verdicts (a run without reports never needs the usage)
        db.in_parallel(con, [lambda c: diff.build_result(c, baseline is not None),
                             lambda c: near_miss.find(c, candidate),
                             *([evaluate.record_usage] if opts.reports else [])])
    def summarise(c: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        return build_summary(
            c, sources=sources, cluster=cluster, candidate=candidate, baseline=baseline,
            accounting=accounting, resplit=resplit, bad_label_pods=bad_label_pods,
            skipped_files=opened.skipped_files,
        )

    # the summary on this connection (it reads the run's registered tables), the
    # connections table meanwhile on a cursor
    with progress.phase("summarising" + (" and writing the connections table"
                                         if write is not None else "")):
        summary = db.in_parallel(con, [summarise, *([write] if write is not None else [])])[0]
    summary["dataplane"] = cni.describe(profile, inferred_from, agent)
    summary["warnings"] = collect_warnings(summary, sources)
    return Result(con, summary, candidate, baseline, tmp)
