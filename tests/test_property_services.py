"""Property test for Services: a flow to a ClusterIP is judged at the Service's backends.
Random worlds and policies (strategies.py) gain a Service over a random set of pods with a
numeric or named target port; the engine's verdict for every client's connection to the
ClusterIP must equal the reference's (reference.evaluate_service: each backend judged by
the plain evaluator, the word they agree on, else unknown).
More examples: NETPOL_PROPERTY_EXAMPLES=300 python -m pytest tests/test_property_services.py
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from pathlib import Path
from typing import Any

import reference
import strategies
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from test_property import cluster_objects, describe, run_engine
from worldfiles import (
    service_of,
    slice_of,
    vpc_record,
    write_cluster,
    write_policies,
    write_vpc_parquet,
)

EXAMPLES = max(10, int(os.environ.get("NETPOL_PROPERTY_EXAMPLES", "80")) // 3)
CLUSTER_IP = "10.96.0.77"
START = 1_717_000_000


@st.composite
def service_cases(draw: st.DrawFn) -> tuple[strategies.Case, str, reference.Service]:
    case = draw(strategies.cases())
    # a Service selects pods of its own namespace
    ns = draw(st.sampled_from(sorted(case.world.namespaces)))
    v4 = [p for p in case.world.pods if p.namespace == ns
          and any(ipaddress.ip_address(ip).version == 4 for ip in p.ips)]
    backends = draw(st.lists(st.sampled_from(v4), unique_by=lambda p: (p.namespace, p.name),
                             max_size=3)) if v4 else []
    names = sorted({cp.name for p in case.world.pods for cp in p.ports if cp.name})
    protocol = draw(st.sampled_from(["TCP", "UDP"]))
    target: int | str = draw(st.sampled_from(names)) if names and draw(st.booleans()) \
        else draw(st.sampled_from([80, 8080, 53]))
    return case, ns, reference.Service(CLUSTER_IP, 80, protocol, target, tuple(backends))


def service_objects(ns: str, svc: reference.Service) -> list[dict[str, Any]]:
    """The Service and its EndpointSlices as the controller writes them: one slice per
    distinct backend port, a backend without the named port left out."""
    by_port: dict[int, list[reference.Pod]] = {}
    for pod in svc.backends:
        port = reference.backend_port(svc, pod)
        if port is not None:
            by_port.setdefault(port, []).append(pod)
    objects: list[dict[str, Any]] = [service_of(
        ns, "svc", [{"name": "p", "port": svc.port, "targetPort": svc.target,
                          "protocol": svc.protocol}], cluster_ip=svc.cluster_ip)]
    for i, (port, pods) in enumerate(sorted(by_port.items())):
        objects.append(slice_of(ns, "svc", f"s{i}",
                                [(reference.same_family_ip(p, svc.cluster_ip),
                                  p.name if not p.host_network else None, True)
                                 for p in pods], [("p", port, svc.protocol)]))
    return objects


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(service_cases())
def test_service_verdicts_agree_with_reference(drawn) -> None:
    case, ns, svc = drawn
    clients = sorted({ip for p in case.world.pods for ip in p.ips
                      if ipaddress.ip_address(ip).version == 4}
                     | {strategies.EXTERNAL_IPS[0]})
    note(describe(case))
    note(f"service: {svc}")
    with tempfile.TemporaryDirectory(prefix="netpol-svc-") as tmp:
        d = Path(tmp)
        objects = cluster_objects(case) + service_objects(ns, svc)
        paths = {
            "cluster": write_cluster(d / "cluster.json", objects),
            "policies": write_policies(d / "policies", case.world.policies),
            "flows": write_vpc_parquet(d / "flows.parquet", [
                vpc_record(c, svc.cluster_ip, svc.port, svc.protocol, src_port=40000 + i,
                           start=START + i) for i, c in enumerate(clients)]),
            "out": d / "out.parquet",
        }
        rows = run_engine(paths)
    got = {r["src_ip"]: r["candidate"] for r in rows if r["dst_ip"] == svc.cluster_ip}
    reasons = {r["src_ip"]: r["candidate_reason"] for r in rows
               if r["dst_ip"] == svc.cluster_ip}
    served = any(reference.backend_port(svc, p) is not None for p in svc.backends)
    problems = []
    for c in clients:
        expected = reference.evaluate_service(case.world, c, svc, svc.port, svc.protocol)
        if not served and got.get(c) == "deny":
            # nothing to follow: only a source whose egress denies whatever the
            # destination may deny; the reason leads with that direction
            if not reasons[c].startswith(("egress: isolated by", "egress: denied by")):
                problems.append(f"{c}: denied without a backend: {reasons[c]}")
            continue
        if got.get(c) != expected:
            problems.append(f"{c} -> {svc.cluster_ip}:{svc.port}/{svc.protocol}: engine "
                            f"{got.get(c)}, reference {expected}")
    assert not problems, "\n".join(problems)
