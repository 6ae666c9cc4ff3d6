"""One simulation run: ingest -> resolve -> evaluate -> diff. Outputs read `result`."""

from __future__ import annotations

import gc
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from . import catalog, connections, db, diff, evaluate, ipnet, manifests
from .accounting import account
from .cluster import Cluster
from .errors import InputError
from .ingest import open_flow_sources
from .ingest.sources import EPHEMERAL_MIN
from .ipnet import parse_cidr
from .manifests import PendingManifests
from .policy.loader import PolicySet
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


@dataclass
class Result:
    con: duckdb.DuckDBPyConnection
    summary: dict[str, Any]
    candidate: PolicySet | None = None
    baseline: PolicySet | None = None
    _tmp: str | None = None

    def connections(self) -> pa.Table:
        return db.arrow(self.con, "SELECT * FROM result_public")

    def close(self, fast: bool = False) -> None:
        """fast: the process is about to end; only what outlives it (the temporary
        directory) is cleaned up."""
        if not fast:
            gc.unfreeze()
            self.con.close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


def _connect(opts: Options) -> tuple[duckdb.DuckDBPyConnection, str | None]:
    tmp = None
    temp_dir = opts.temp_dir
    if temp_dir is None:
        tmp = temp_dir = tempfile.mkdtemp(prefix="netpol-simulator-")
    con = duckdb.connect(config={"memory_limit": opts.memory_limit,
                                 "temp_directory": temp_dir,
                                 "preserve_insertion_order": False})
    # On a terminal, DuckDB's own bar shows how far a long scan is; elsewhere it stays off
    # (it would write into logs and notebooks).
    show = not opts.quiet and sys.stderr.isatty() and sys.stdout.isatty()
    db.run(con, f"SET enable_progress_bar = {str(show).lower()}")
    if opts.threads:
        db.run(con, f"SET threads = {int(opts.threads)}")
    ipnet.register(con)
    return con, tmp


def save_flows(con: duckdb.DuckDBPyConnection, sources: list[Any], path: str) -> None:
    """Write every ingested record in the normalized flow schema (Parquet)."""
    if not path.lower().endswith((".parquet", ".pq")):
        raise InputError("--save-flows", f"{path}: the normalized flows are written as "
                                         "Parquet; use a .parquet name")
    union = "\nUNION ALL\n".join(s.records_sql() for s in sources)
    target = path.replace("'", "''")
    db.run(con, f"COPY ({union}) TO '{target}' (FORMAT parquet)")


def _check_cidrs(cidrs: list[str]) -> None:
    for c in cidrs:
        try:
            parse_cidr(c)
        except ValueError:
            raise InputError("--pod-cidr", f"not a CIDR: {c!r}") from None


def run(opts: Options, pending: PendingManifests | None = None) -> Result:
    """The run; `pending`: its manifests, if manifests.start_reading() was called earlier
    (before DuckDB starts its threads)."""
    progress = Progress(not opts.quiet)
    try:
        _check_cidrs(opts.pod_cidrs)
        if pending is None:
            pending = manifests.start_reading(opts.policies, opts.baseline or None,
                                              opts.cluster)
        with progress.phase("loading policies and cluster snapshot"):
            candidate, baseline, cluster = pending.result()
    finally:
        if pending is not None:
            pending.close()
    con, tmp = _connect(opts)
    # The manifests' millions of objects live as long as the run: kept out of the
    # collector's sight, every later Python step stops paying to walk them again.
    gc.freeze()
    try:
        return _run(con, tmp, opts, progress, candidate, baseline, cluster)
    except BaseException:
        gc.unfreeze()
        con.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def _run(con: duckdb.DuckDBPyConnection, tmp: str | None, opts: Options, progress: Progress,
         candidate: PolicySet, baseline: PolicySet | None, cluster: Cluster) -> Result:
    idents = catalog.Identities()
    # detection; captures are parsed here (into the normalized form the SQL path reads)
    with progress.phase("opening flow files") as note:
        sources = open_flow_sources(con, opts.flows, opts.flows_format,
                                    tmp or opts.temp_dir, opts.vpc_fields)
        note["done"] = ", ".join(f"{len(s.files)} {s.format}" for s in sources)
    if opts.save_flows:
        with progress.phase("saving normalized flows"):
            save_flows(con, sources, opts.save_flows)
    catalog.register_cluster(con, cluster, opts.pod_cidrs, idents)
    server_ports = [cp.port for p in cluster.pods for cp in p.ports if cp.port >= EPHEMERAL_MIN]
    with progress.phase("reading flows") as note:
        try:
            connections.build_tuples(con, sources, server_ports)
        except duckdb.Error as e:
            files = ", ".join(f for s in sources for f in s.files)
            raise InputError(files, f"cannot read flows: {str(e).splitlines()[0]}") from None
        n = db.one(con, "SELECT sum(records), count(*) FROM tuples")
        note["done"] = f"{int(n[0] or 0):,} records, {int(n[1] or 0):,} tuples"
        note["count"] = int(n[0] or 0)
    with progress.phase("resolving endpoints") as note:
        bad_label_pods = catalog.register_flow_pods(con, idents)
        catalog.register_identities(con, idents)
        resplit = connections.resolve(con, sources, server_ports)
        connections.orient(con)
        n = db.one(con, "SELECT count(*) FROM conns")
        note["done"] = f"{int(n[0]):,} connections"
    with progress.phase("evaluating policies"):
        sets = [("candidate", candidate.policies)]
        if baseline is not None:
            sets.append(("baseline", baseline.policies))
        register_policy_tables(con, sets)
        evaluate.evaluate(con, [name for name, _ in sets])
        evaluate.record_usage(con)
        diff.build_result(con, baseline is not None)
    summary = build_summary(
        con, sources=sources, cluster=cluster, candidate=candidate, baseline=baseline,
        accounting=account(con, sources, server_ports),
        resplit=resplit, bad_label_pods=bad_label_pods,
    )
    return Result(con, summary, candidate, baseline, tmp)
