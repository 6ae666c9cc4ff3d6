"""The benchmark workload end to end at a small size: generate.py (with padding policies
beyond its core set), the pipeline, and benchmarks/reference_check.py's comparison of the
connections table with the per-flow reference evaluator (0 mismatches)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def bench_modules():
    sys.path.insert(0, str(BENCH))
    try:
        import generate
        import reference_check
    finally:
        sys.path.remove(str(BENCH))
    return generate, reference_check


def test_generated_workload_matches_reference(tmp_path, bench_modules):
    generate, reference_check = bench_modules
    from simulator.output.table import write_connections
    from simulator.pipeline import Options, run

    info = generate.generate(tmp_path, 20_000, 120, 8, 60, quiet=True)
    # NetworkPolicies filled up to the requested size, the cluster-scoped tiers besides
    assert info["policies_current"] - info["cluster_policies_current"] == 60
    assert info["cluster_policies_candidate"] == info["cluster_policies_current"] + 1 > 3
    result = run(Options(flows=[str(tmp_path / "flows.parquet")],
                         policies=[str(tmp_path / "candidate")],
                         baseline=[str(tmp_path / "current")],
                         cluster=[str(tmp_path / "cluster.json")]))
    try:
        out = tmp_path / "conns.parquet"
        write_connections(result.con, str(out))
    finally:
        result.close()
    eq = reference_check.compare(tmp_path, out, 400, 7)
    assert eq["compared"] > 100
    assert eq["mismatches"] == 0, eq["mismatch_examples"]
