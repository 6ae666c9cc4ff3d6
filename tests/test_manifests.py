"""Manifests (policy sets, the cluster snapshot) are parsed in forked worker processes when
they are large: the sets, the snapshot, and the error a user sees, must be the same as when
every file is parsed in turn."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from worldfiles import netpol, write_policies

from simulator import manifests
from simulator.cli import main
from simulator.errors import InputError, PolicyError
from simulator.policy import loader

REPO = Path(__file__).resolve().parent.parent


def many_policies(directory: Path, n: int = 60) -> Path:
    """The demo's policies plus n generated ones, one file each, of varied size."""
    shutil.copytree(REPO / "policies" / "candidate", directory)
    pols = []
    for i in range(n):
        ports = [{"protocol": "TCP", "port": 1000 + j} for j in range(1 + i % 7)]
        pols.append(netpol(f"ns-{i % 9}", f"p{i}", {
            "podSelector": {"matchLabels": {"app": f"a{i}"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": f"r{i}"}}}],
                         "ports": ports}]}))
    write_policies(directory, pols)
    (directory / "zz-not-a-policy.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n"
                                                    "metadata: {name: x}\n")
    return directory


def load(paths: dict[str, list[Path]], parallel: bool, monkeypatch: pytest.MonkeyPatch,
         cluster: list[Path] | None = None) -> list[Any]:
    monkeypatch.setattr(manifests, "PARALLEL_MIN_BYTES", 0 if parallel else 1 << 60)
    pending = manifests.start_reading(paths["candidate"], paths.get("baseline"), cluster or [])
    assert bool(pending._procs) == (parallel and manifests._workers() > 0)
    candidate, baseline, snapshot = pending.result()
    return [s for s in (candidate, baseline) if s is not None] + [snapshot]


def as_data(parts: list[Any]) -> list[Any]:
    return [(s.name, s.policies, s.files, dict(s.ignored), s.manifests)
            if isinstance(s, loader.PolicySet) else s for s in parts]


@pytest.mark.skipif(manifests._workers() == 0, reason="needs fork and a second CPU")
def test_parallel_parse_gives_the_same_sets(tmp_path, monkeypatch):
    cand = many_policies(tmp_path / "candidate")
    paths = {"candidate": [cand],
             "baseline": [REPO / "policies" / "current", cand / "payments.yaml"]}
    snapshot = [REPO / "flows" / "demo-cluster.json"]
    serial = load(paths, False, monkeypatch, snapshot)
    parallel = load(paths, True, monkeypatch, snapshot)
    assert as_data(parallel) == as_data(serial)
    assert len(serial[2].pods) > 10
    assert len(serial[0].policies) > 60
    assert serial[0].ignored["v1 ConfigMap"] == 2  # the demo's and ours


@pytest.mark.skipif(manifests._workers() == 0, reason="needs fork and a second CPU")
def test_a_dead_worker_costs_time_not_policies(tmp_path, monkeypatch):
    cand = many_policies(tmp_path / "candidate")
    serial = load({"candidate": [cand]}, False, monkeypatch)

    def take_one_and_die(chunks: Any, counter: Any, send: Any) -> None:
        assert manifests._take(counter, len(chunks)) is not None
        os._exit(3)

    monkeypatch.setattr(manifests, "_worker", take_one_and_die)
    assert as_data(load({"candidate": [cand]}, True, monkeypatch)) == as_data(serial)


@pytest.mark.parametrize("parallel", [False, True])
def test_the_first_bad_file_in_order_is_reported(tmp_path, monkeypatch, parallel):
    cand = many_policies(tmp_path / "candidate")
    # the later bad file is the biggest: a worker parses it first
    (cand / "0003-bad.yaml").write_text("kind: [unclosed\n")
    bad_spec = netpol("x", "bad", {"podSelector": {}, "policyTypes": ["Sideways"]})
    write_policies(tmp_path / "tmp", [bad_spec])
    big = (tmp_path / "tmp").glob("*.yaml").__next__().read_text()
    (cand / "0050-bad-too.yaml").write_text(big + "\n" * 200_000)
    with pytest.raises(InputError) as err:
        load({"candidate": [cand]}, parallel, monkeypatch)
    assert err.value.path.endswith("0003-bad.yaml")
    assert "invalid YAML" in str(err.value)


def test_input_errors_survive_the_trip_from_a_worker():
    for e in (InputError("a.yaml", "invalid YAML: x", "line 3"),
              PolicyError("b.yaml", "spec.policyTypes: bad")):
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is type(e) and str(back) == str(e)
        assert (back.path, back.where, back.message) == (e.path, e.where, e.message)


def test_a_bad_policy_is_reported_before_a_bad_snapshot(tmp_path, monkeypatch):
    monkeypatch.setattr(manifests, "PARALLEL_MIN_BYTES", 0)
    cand = many_policies(tmp_path / "candidate")
    (cand / "0001-bad.yaml").write_text("kind: [unclosed\n")
    cluster = tmp_path / "cluster.json"
    cluster.write_text("{not json")
    flows = REPO / "flows"
    first = sorted(p for p in flows.iterdir() if p.suffix == ".parquet")[0]
    result = CliRunner().invoke(main, ["--flows", str(first), "--cluster", str(cluster),
                                       "--policies", str(cand)])
    assert result.exit_code == 2, result.output
    assert "0001-bad.yaml" in result.output and "cluster.json" not in result.output


@pytest.mark.parametrize("parallel", [False, True])
def test_the_snapshot_is_handed_over_once_and_whole(tmp_path, monkeypatch, parallel):
    cand = many_policies(tmp_path / "candidate")
    snapshot = [REPO / "flows" / "demo-cluster.json"]
    monkeypatch.setattr(manifests, "PARALLEL_MIN_BYTES", 0 if parallel else 1 << 60)
    pending = manifests.start_reading([cand], None, snapshot)
    seen = []
    candidate, _, cluster = pending.result(on_cluster=seen.append)
    assert len(seen) == 1 and seen[0] is cluster
    serial = load({"candidate": [cand]}, False, monkeypatch, snapshot)
    assert as_data([cluster]) == as_data([serial[-1]])
    assert as_data([candidate]) == as_data([serial[0]])


@pytest.mark.parametrize("parallel", [False, True])
def test_without_a_snapshot_an_empty_one_is_handed_over(tmp_path, monkeypatch, parallel):
    monkeypatch.setattr(manifests, "PARALLEL_MIN_BYTES", 0 if parallel else 1 << 60)
    cand = many_policies(tmp_path / "candidate")
    seen: list[Any] = []
    _, _, cluster = manifests.start_reading([cand], None, []).result(on_cluster=seen.append)
    assert seen == [cluster] and cluster.pods == []


@pytest.mark.parametrize("parallel", [False, True])
def test_a_bad_snapshot_is_never_handed_over(tmp_path, monkeypatch, parallel):
    monkeypatch.setattr(manifests, "PARALLEL_MIN_BYTES", 0 if parallel else 1 << 60)
    cand = many_policies(tmp_path / "candidate")
    cluster = tmp_path / "cluster.json"
    cluster.write_text("{not json")
    seen: list[Any] = []
    with pytest.raises(InputError, match="invalid JSON"):
        manifests.start_reading([cand], None, [cluster]).result(on_cluster=seen.append)
    assert seen == []


def _demo_run(tmp_path: Path, name: str, flows: Path | None = None,
              policies: Path | None = None, save: bool = False) -> Any:
    out = tmp_path / f"{name}.parquet"
    saved = ["--save-flows", str(tmp_path / f"{name}-flows.parquet")] if save else []
    result = CliRunner().invoke(main, [*saved,
        "--flows", str(flows or REPO / "flows" / "demo-vpc.parquet"),
        "--cluster", str(REPO / "flows" / "demo-cluster.json"),
        "--policies", str(policies or REPO / "policies" / "candidate"),
        "--baseline", str(REPO / "policies" / "current"), "--out", str(out), "--quiet"])
    return result, out


@pytest.mark.skipif(manifests._workers() == 0, reason="needs fork and a second CPU")
def test_flows_scanned_while_policies_are_read_give_the_same_connections(tmp_path,
                                                                          monkeypatch):
    import threading

    import duckdb

    from simulator import connections

    started: list[bool] = []  # per scan: whether it ran beside the main thread
    real_scan = connections.build_tuples

    def spy(*args: Any) -> Any:
        started.append(threading.current_thread() is not threading.main_thread())
        return real_scan(*args)

    monkeypatch.setattr(connections, "build_tuples", spy)
    monkeypatch.setattr(manifests, "PARALLEL_MIN_BYTES", 1 << 60)
    serial, serial_out = _demo_run(tmp_path, "serial", save=True)
    assert serial.exit_code in (0, 1), serial.output
    assert started == [False]  # the flows are saved first: the scan starts in turn
    monkeypatch.setattr(manifests, "PARALLEL_MIN_BYTES", 0)
    early, early_out = _demo_run(tmp_path, "early")
    assert early.exit_code == serial.exit_code, early.output
    assert started == [False, True]  # the scan ran in a thread of its own
    con = duckdb.connect()
    a, b = (f"read_parquet('{p}')" for p in (serial_out, early_out))
    assert con.execute(f"SELECT count(*) FROM {a}").fetchone()[0] > 10
    assert con.execute(f"SELECT count(*) FROM (SELECT * FROM {a} EXCEPT ALL "
                       f"SELECT * FROM {b})").fetchone()[0] == 0
    assert con.execute(f"SELECT count(*) FROM (SELECT * FROM {b} EXCEPT ALL "
                       f"SELECT * FROM {a})").fetchone()[0] == 0


def test_a_bad_policy_is_reported_before_a_bad_flow_file(tmp_path, monkeypatch):
    monkeypatch.setattr(manifests, "PARALLEL_MIN_BYTES", 0)
    cand = many_policies(tmp_path / "candidate")
    (cand / "0001-bad.yaml").write_text("kind: [unclosed\n")
    flows = tmp_path / "flows.parquet"
    flows.write_bytes(b"PAR1 not really parquet")
    result, _ = _demo_run(tmp_path, "bad", flows=flows, policies=cand)
    assert result.exit_code == 2, result.output
    assert "0001-bad.yaml" in result.output and "flows.parquet" not in result.output
    # and with good policies the flow file is the one named
    result, _ = _demo_run(tmp_path, "bad", flows=flows)
    assert result.exit_code == 2 and "flows.parquet" in result.output, result.output


def test_manifest_readers_start_before_the_heavy_imports(tmp_path):
    """The readers are forked before DuckDB and Arrow are imported (they are imported while
    the workers parse; forking a process that runs DuckDB's threads is unsafe), with every
    option that has a check of its own, --fixes-dir's included."""
    import subprocess
    import sys

    probe = """
import sys
from simulator import manifests
started = manifests.start_reading
def spy(*a, **k):
    print("heavy at fork:", sorted(m for m in ("duckdb", "pyarrow", "jinja2") if m in sys.modules))
    return started(*a, **k)
manifests.start_reading = spy
from simulator.cli import main
main()
"""
    args = ["--flows", str(REPO / "flows" / "demo-vpc.parquet"),
            "--cluster", str(REPO / "flows" / "demo-cluster.json"),
            "--policies", str(REPO / "policies" / "candidate"),
            "--baseline", str(REPO / "policies" / "current"),
            "--fixes-dir", str(tmp_path / "fixes"), "--report", str(tmp_path / "r.html"),
            "--markdown", str(tmp_path / "r.md"), "--json", str(tmp_path / "r.json"),
            "--out", str(tmp_path / "c.parquet"), "--quiet"]
    run = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True,
                         cwd=REPO, check=False)
    assert "heavy at fork: []" in run.stdout, run.stdout + run.stderr
    assert (tmp_path / "fixes" / "all.yaml").exists()


@pytest.mark.skipif(manifests._workers() == 0, reason="needs fork and a second CPU")
def test_a_worker_stopped_while_parsing_says_nothing(tmp_path):
    """close() stops the workers still parsing (a bad file was found first, or the run is
    interrupted). They inherit the command's signal handlers; stopped, they end without a
    word, so that the command's own message is the only one."""
    import subprocess
    import sys

    cand = many_policies(tmp_path / "candidate", n=400)
    probe = f"""
import signal
from simulator import cli, manifests
manifests.PARALLEL_MIN_BYTES = 0
for signum in (signal.SIGTERM, signal.SIGINT):   # as the command sets them
    signal.signal(signum, cli._terminated)
pending = manifests.start_reading([{str(cand)!r}], None, [])
workers = list(pending._procs)
pending.close()   # at once: the workers are still parsing
print([w.exitcode for w in workers])
"""
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=REPO, check=False, timeout=120)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert run.stdout.strip() == str([-9] * manifests._workers()), run.stdout
