"""Replay the upstream network-policy e2e model through the `simulate` CLI.

Every case of tests/e2e_model.py becomes one world on disk (kubectl JSON, policy YAML, VPC
flow-log Parquet with one flow per (from pod, to pod) probe) and one CLI run; each probe's
`candidate` verdict must match the case's expected reachability cell.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

try:
    from tests import e2e_model as m
except ImportError:  # pragma: no cover - depends on how pytest put tests/ on sys.path
    import e2e_model as m  # type: ignore[no-redef]


def _cli():
    try:
        from simulator.cli import main
    except ImportError as exc:  # pragma: no cover - until the engine exists
        pytest.skip(f"simulator.cli not importable yet: {exc}")
    return main


def _run(paths: m.WorldPaths) -> list[dict]:
    from click.testing import CliRunner

    main = _cli()
    args = [
        "--flows", str(paths.flows),
        "--cluster", str(paths.cluster),
        "--policies", str(paths.policies),
        "--out", str(paths.out),
        "--quiet",
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, f"simulate exited {result.exit_code}:\n{result.output}"
    return pq.read_table(paths.out).to_pylist()


def _observed(rows: list[dict], case: m.Case) -> tuple[dict, list[str]]:
    """Map verdict rows back to (from pod, to pod) cells; collect inconsistencies."""
    problems: list[str] = []
    verdicts: dict[tuple[str, str], set[str]] = defaultdict(set)
    for row in rows:
        src, dst = m.IP_TO_POD.get(row["src_ip"]), m.IP_TO_POD.get(row["dst_ip"])
        if src is None or dst is None:
            problems.append(f"row for unknown addresses {row['src_ip']} -> {row['dst_ip']}")
            continue
        if int(row["dst_port"]) != case.port or row["protocol"] != case.protocol:
            problems.append(
                f"{src} -> {dst}: row has {row['protocol']}/{row['dst_port']}, "
                f"probed {case.protocol}/{case.port}"
            )
        for col, want in (
            ("src_namespace", m.split(src)[0]),
            ("src_pod", m.split(src)[1]),
            ("dst_namespace", m.split(dst)[0]),
            ("dst_pod", m.split(dst)[1]),
        ):
            got = row.get(col)
            if got is not None and got != want and not str(got).endswith("/" + want):
                problems.append(f"{src} -> {dst}: {col} is {got!r}, expected {want!r}")
        verdicts[(src, dst)].add(row["candidate"])

    observed: dict[tuple[str, str], bool | None] = {}
    for key in m.probes():
        seen = verdicts.get(key)
        if not seen:
            observed[key] = None
            problems.append(f"{key[0]} -> {key[1]}: no verdict row")
        elif len(seen) > 1:
            observed[key] = None
            problems.append(f"{key[0]} -> {key[1]}: conflicting verdicts {sorted(seen)}")
        else:
            verdict = next(iter(seen))
            if verdict not in ("allow", "deny"):
                problems.append(f"{key[0]} -> {key[1]}: unexpected candidate {verdict!r}")
            observed[key] = verdict == "allow"
    return observed, problems


@pytest.mark.parametrize("case", m.CASES, ids=[c.id for c in m.CASES])
def test_e2e_model_case(case: m.Case, tmp_path: Path) -> None:
    _cli()  # skip before writing anything when the engine is absent
    paths = m.write_world(tmp_path, case)
    rows = _run(paths)
    observed, problems = _observed(rows, case)
    expected = case.reachability

    wrong = [
        f"{f} -> {t}: expected {'allow' if want else 'deny'}, got "
        f"{'allow' if observed[(f, t)] else 'deny'}"
        + ("  (loopback)" if f == t else "")
        for (f, t), want in expected.items()
        if observed.get((f, t)) is not None and observed[(f, t)] != want
    ]
    if wrong or problems:
        origin = "upstream e2e" if case.upstream else "upstream-style"
        pytest.fail(
            f"[{origin}] {case.title}\nprobe {case.protocol}/{case.port}; "
            f"{len(wrong)} cell(s) differ\n"
            + "\n".join(wrong + problems)
            + "\n\n"
            + m.render_expected_observed(expected, observed),
            pytrace=False,
        )


# ---- model self-checks (run without the engine) ---------------------------------------------


def test_world_files_parse(tmp_path: Path) -> None:
    import json

    import yaml

    case = next(c for c in m.CASES if c.id == "ingress-updated-namespace-after")
    paths = m.write_world(tmp_path, case)
    cluster = json.loads(paths.cluster.read_text())
    kinds = [o["kind"] for o in cluster["items"]]
    assert kinds.count("Pod") == 9 and kinds.count("Namespace") == 3 and kinds.count("Node") == 1
    y = next(
        o for o in cluster["items"] if o["kind"] == "Namespace" and o["metadata"]["name"] == "y"
    )
    assert y["metadata"]["labels"] == {"ns": "y", m.NS_NAME_LABEL: "y", "ns2": "updated"}
    pod_xa = next(o for o in cluster["items"] if o["kind"] == "Pod")
    names = {p["name"] for p in pod_xa["spec"]["containers"][0]["ports"]}
    assert names == {f"serve-{n}-{p}" for n in (80, 81) for p in ("tcp", "udp", "sctp")}
    docs = [yaml.safe_load(f.read_text()) for f in sorted(paths.policies.glob("*.yaml"))]
    assert [d["metadata"]["name"] for d in docs] == [p["metadata"]["name"] for p in case.policies]
    table = pq.read_table(paths.flows)
    assert table.num_rows == 81
    assert len(set(table.column("srcport").to_pylist())) == 81


def test_model_catalogue() -> None:
    assert len(m.CASES) >= 40
    assert len({c.id for c in m.CASES}) == len(m.CASES)
    for case in m.CASES:
        assert set(case.reachability.cells) == set(m.probes())
        assert case.protocol in m.PROTOCOLS and case.port in m.PORTS
    assert {c.protocol for c in m.CASES} == set(m.PROTOCOLS)
    assert len({m.pod_ip(p) for p in m.ALL_PODS}) == 9
