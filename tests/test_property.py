"""Property test: the engine's candidate verdict equals the reference evaluator's, for
every connection of random worlds written to disk and replayed through the real CLI.

Run: python -m pytest tests/test_property.py -q
More examples: NETPOL_PROPERTY_EXAMPLES=500 python -m pytest tests/test_property.py -q
Keep the minimal failing world's files: NETPOL_PROPERTY_KEEP=/tmp/netpol-failure (then
re-run `simulate` on cluster.json, policies/ and flows.parquet in that directory).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, note, settings

try:  # tests/ as a package or as a plain directory on sys.path
    from tests import reference, strategies
    from tests.worldfiles import (
        namespace,
        netpol,
        node,
        pod,
        vpc_record,
        write_cluster,
        write_policies,
        write_vpc_parquet,
    )
except ImportError:  # pragma: no cover
    import reference
    import strategies
    from worldfiles import (
        namespace,
        netpol,
        node,
        pod,
        vpc_record,
        write_cluster,
        write_policies,
        write_vpc_parquet,
    )

EXAMPLES = int(os.environ.get("NETPOL_PROPERTY_EXAMPLES", "80"))
FLOW_START = 1_717_000_000  # 2024-05-29, after every pod's creationTimestamp (2024-01-01)
ICMP_NAMES = {"ICMP": "ICMP", "ICMPV4": "ICMP", "ICMPV6": "ICMPv6", "IPV6-ICMP": "ICMPv6"}

engine_missing = importlib.util.find_spec("simulator.cli") is None


# ------------------------------------------------------------------ world -> files


def cluster_objects(case: strategies.Case) -> list[dict[str, Any]]:
    world = case.world
    objects: list[dict[str, Any]] = []
    for ns, labels in world.namespaces.items():
        objects.append(namespace(ns, {**labels, reference.NAMESPACE_NAME_LABEL: ns}))
    for name, ip in world.nodes.items():
        objects.append(node(name, ip, case.node_pod_cidrs.get(name, ()),
                            world.node_labels.get(name)))
    for p in world.pods:
        objects.append(
            pod(
                p.namespace,
                p.name,
                list(p.ips),
                p.labels,
                [(cp.name, cp.number, cp.protocol) for cp in p.ports],
                node=p.node,
                host_network=p.host_network,
            )
        )
    return objects


def write_case(case: strategies.Case, directory: Path) -> dict[str, Path]:
    paths = {
        "cluster": write_cluster(directory / "cluster.json", cluster_objects(case)),
        "policies": write_policies(directory / "policies", case.world.policies),
        "flows": write_vpc_parquet(
            directory / "flows.parquet",
            [
                vpc_record(f.src, f.dst, f.port, f.protocol, src_port=f.src_port,
                           start=FLOW_START + 7 * i)
                for i, f in enumerate(strategies.all_flows(case))
            ],
        ),
        "out": directory / "out.parquet",
    }
    return paths


def describe(case: strategies.Case) -> str:
    """The whole case as readable text, for failure reports."""
    w = case.world
    doc = {
        "namespaces": {k: dict(v) for k, v in w.namespaces.items()},
        "nodes": dict(w.nodes),
        "pods": [
            {
                "ns": p.namespace, "name": p.name, "ips": list(p.ips), "labels": dict(p.labels),
                "ports": [[cp.name, cp.number, cp.protocol] for cp in p.ports],
                **({"hostNetwork": True} if p.host_network else {}), "node": p.node,
            }
            for p in w.pods
        ],
        "policies": [dict(pol) for pol in w.policies],
    }
    return yaml.safe_dump(doc, sort_keys=False, width=100)


# ------------------------------------------------------------------ running the engine


def conn_key(src: str, dst: str, port: int | None, protocol: str) -> tuple[str, str, int, str]:
    proto = str(protocol)
    proto = ICMP_NAMES.get(proto.upper(), proto.upper())
    if proto.startswith("ICMP"):
        port = 0  # ICMP has no port; compare on addresses and protocol only
    return (
        str(ipaddress.ip_address(src)),
        str(ipaddress.ip_address(dst)),
        int(port or 0),
        proto,
    )


def run_engine(paths: dict[str, Path]) -> list[dict[str, Any]]:
    main = importlib.import_module("simulator.cli").main  # imported late: may not exist yet
    args = [
        "--flows", str(paths["flows"]),
        "--cluster", str(paths["cluster"]),
        "--policies", str(paths["policies"]),
        "--out", str(paths["out"]),
        "--quiet",
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=True)
    if result.exit_code != 0:
        detail = result.output
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback

            detail += "".join(traceback.format_exception(result.exception))
        pytest.fail(f"simulate exited {result.exit_code}:\n{detail}")
    return pq.read_table(paths["out"]).to_pylist()


def engine_verdicts(rows: list[dict[str, Any]]) -> dict[tuple[str, str, int, str], set[str]]:
    verdicts: dict[tuple[str, str, int, str], set[str]] = {}
    for row in rows:
        key = conn_key(row["src_ip"], row["dst_ip"], row.get("dst_port"), row["protocol"])
        verdicts.setdefault(key, set()).add(row["candidate"])
    return verdicts


def mismatches(case: strategies.Case, rows: list[dict[str, Any]]) -> list[str]:
    got = engine_verdicts(rows)
    problems = []
    seen = set()
    for f in strategies.all_flows(case):
        key = conn_key(f.src, f.dst, f.port, f.protocol)
        if key in seen:
            continue
        seen.add(key)
        expected = reference.evaluate(case.world, f.src, f.dst, f.port, f.protocol)
        engine = got.get(key)
        if engine != {expected.word}:
            problems.append(
                f"{f.src} -> {f.dst} {f.protocol}/{f.port}: reference={expected.word} "
                f"engine={sorted(engine) if engine else 'NO ROW'}\n"
                f"    reference egress:  {expected.egress}\n"
                f"    reference ingress: {expected.ingress}"
            )
    return problems


# ------------------------------------------------------------------ the properties


@pytest.mark.skipif(engine_missing, reason="simulator.cli not written yet")
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
@given(strategies.cases())
def test_engine_agrees_with_reference(case: strategies.Case) -> None:
    note(describe(case))
    with tempfile.TemporaryDirectory(prefix="netpol-prop-") as tmp:
        paths = write_case(case, Path(tmp))
        rows = run_engine(paths)
        problems = mismatches(case, rows)
        keep = os.environ.get("NETPOL_PROPERTY_KEEP")
        if problems and keep:  # the last one written is hypothesis's minimal example
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(tmp, keep)
            Path(keep, "world.yaml").write_text(describe(case))
            Path(keep, "mismatches.txt").write_text("\n".join(problems) + "\n")
    assert not problems, (
        f"engine disagrees with reference on {len(problems)} connections:\n"
        + "\n".join(problems[:12])
        + ("\n..." if len(problems) > 12 else "")
    )


def test_strategies_cover_every_feature() -> None:
    seen: set[str] = set()

    @settings(max_examples=200, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(strategies.cases())
    def collect(case: strategies.Case) -> None:
        seen.update(strategies.features(case))

    collect()
    assert strategies.ALL_FEATURES <= seen, sorted(strategies.ALL_FEATURES - seen)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(strategies.cases())
def test_generated_worlds_are_valid(case: strategies.Case) -> None:
    """What we generate is what the API server would accept, and IPs resolve unambiguously."""
    cidrs = [ipaddress.ip_network(c) for cs in case.node_pod_cidrs.values() for c in cs]
    real = [p for p in case.world.pods if not p.host_network]
    for p in real:
        for ip in p.ips:
            assert any(ipaddress.ip_address(ip) in c for c in cidrs)
    for ip in strategies.EXTERNAL_IPS:
        assert not any(ipaddress.ip_address(ip) in c for c in cidrs)
    for pol in case.world.policies:
        spec = pol["spec"]
        for key in ("ingress", "egress"):
            for rule in spec.get(key) or []:
                for peer in rule.get("from", []) + rule.get("to", []):
                    assert peer, "a peer must set at least one field"
                    if "ipBlock" in peer:
                        assert set(peer) == {"ipBlock"}
                        net = ipaddress.ip_network(peer["ipBlock"]["cidr"])  # strict
                        for exc in peer["ipBlock"].get("except", []):
                            sub = ipaddress.ip_network(exc)
                            assert sub.subnet_of(net) and sub.prefixlen > net.prefixlen
                for ps in rule.get("ports", []):
                    if "endPort" in ps:
                        assert isinstance(ps["port"], int) and ps["endPort"] >= ps["port"]
                        assert ps["endPort"] <= 65535
    for f in case.flows:
        assert ipaddress.ip_address(f.src).version == ipaddress.ip_address(f.dst).version
        if not f.protocol.startswith("ICMP"):
            assert 0 < f.port < 32768 and 40000 <= f.src_port <= 60000
    # the files round-trip through the helpers
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_case(case, Path(tmp))
        assert json.loads(paths["cluster"].read_text())["kind"] == "List"
        assert len(list(paths["policies"].glob("*.yaml"))) == len(case.world.policies)


# ------------------------------------------------------------------ hand-picked worlds

_CP = reference.ContainerPort
_PODS = (
    reference.Pod("alpha", "web", ("10.0.1.10", "fd00:0:0:1::a"), {"app": "web"},
                  (_CP("http", 8080), _CP("dns", 53, "UDP"))),
    reference.Pod("alpha", "db", ("10.0.2.11",), {"app": "db"},
                  (_CP("http", 5432), _CP("sig", 3868, "SCTP")), node="node-2"),
    reference.Pod("beta", "client", ("10.0.1.12", "fd00:0:0:1::c"), {"app": "api"}),
    reference.Pod("beta", "agent", (strategies.NODES["node-2"],), {"app": "api"},
                  host_network=True, node="node-2"),
)
_NS = {"alpha": {"team": "red"}, "beta": {"team": "blue"}}


def _spec(ns: str, name: str, **spec: Any) -> dict[str, Any]:
    return netpol(ns, name, {"podSelector": {}, **spec})


HAND_PICKED: dict[str, list[dict[str, Any]]] = {
    # API-server defaulting: an empty policyTypes list is defaulted like an absent one
    "policyTypes-empty-list": [_spec("alpha", "p", policyTypes=[])],
    "ingress-empty-vs-empty-rule": [
        _spec("alpha", "none", ingress=[]),
        _spec("beta", "all", ingress=[{}], egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]),
    ],
    "named-ports-both-directions": [
        _spec("alpha", "in", ingress=[{"ports": [{"port": "http"}, {"port": "dns",
                                                                    "protocol": "UDP"}]}]),
        _spec("beta", "out", policyTypes=["Egress"],
              egress=[{"ports": [{"port": "http"}, {"port": "sig", "protocol": "SCTP"}]}]),
    ],
    "ns-and-pod-selector-and-endport": [
        _spec("alpha", "p", podSelector={"matchLabels": {"app": "web"}}, ingress=[{
            "from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}},
                      "podSelector": {"matchExpressions": [
                          {"key": "app", "operator": "NotIn", "values": ["db"]}]}}],
            "ports": [{"port": 8000, "endPort": 8080}],
        }]),
    ],
    "ipblock-except-v4-v6": [
        _spec("beta", "p", policyTypes=["Ingress", "Egress"],
              ingress=[{"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.2.0/24"]}}]}],
              egress=[{"to": [{"ipBlock": {"cidr": "fd00::/16", "except": ["fd00:0:0:1::a/128"]}},
                              {"ipBlock": {"cidr": "203.0.113.0/24"}}]}]),
    ],
    "resident-node-and-host-network": [_spec("alpha", "deny", policyTypes=["Ingress", "Egress"])],
}


@pytest.mark.skipif(engine_missing, reason="simulator.cli not written yet")
@pytest.mark.parametrize("name", sorted(HAND_PICKED))
def test_engine_hand_picked_worlds(name: str) -> None:
    world = reference.World(_NS, _PODS, dict(strategies.NODES), tuple(HAND_PICKED[name]))
    case = strategies.Case(world, (), dict(strategies.NODE_POD_CIDRS))
    with tempfile.TemporaryDirectory(prefix="netpol-hand-") as tmp:
        rows = run_engine(write_case(case, Path(tmp)))
    problems = mismatches(case, rows)
    assert not problems, f"{len(problems)} disagreements:\n" + "\n".join(problems[:12])
