"""The policy sets of a generated workload rewritten in Cilium's language, for figure 1's
Cilium variants: every NetworkPolicy as the CiliumNetworkPolicy that says the same thing
(`cilium-current/`, `cilium-candidate/`), and a mix where the policies of every other
namespace are converted (`mixed-current/`, `mixed-candidate/`). Cluster-scoped policies
(AdminNetworkPolicy and the like) are dropped: a cluster enforcing Cilium's own policies
does not run them.

    python benchmarks/cilium_sets.py DATA_DIR

The flows stay those of the workload: what matters here is the cost of judging them under
Cilium's policies (allow and deny rules, identity labels, entities), not which verdicts
change. Each converted policy keeps its namespace, selectors, peers and ports:
podSelector -> endpointSelector; a pod/namespace peer -> fromEndpoints/toEndpoints with
the namespace's labels as `io.cilium.k8s.namespace.labels.*`; an ipBlock -> a CIDR set;
a peer-less rule -> `toPorts` alone (every peer) or the `all` entity; an isolating type
without rules -> `- {}` (admits nothing).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

NS_LABELS = "io.cilium.k8s.namespace.labels."


def _endpoint(peer: dict[str, Any]) -> dict[str, Any]:
    pod = peer.get("podSelector") or {}
    out: dict[str, Any] = {}
    labels = dict(pod.get("matchLabels") or {})
    exprs = list(pod.get("matchExpressions") or [])
    if "namespaceSelector" in peer:
        ns = peer["namespaceSelector"] or {}
        labels.update({NS_LABELS + k: v for k, v in (ns.get("matchLabels") or {}).items()})
        exprs += [dict(e, key=NS_LABELS + e["key"]) for e in ns.get("matchExpressions") or []]
        if not ns.get("matchLabels") and not ns.get("matchExpressions"):
            # every namespace: naming the namespace label lifts Cilium's scoping
            exprs.append({"key": "k8s:io.kubernetes.pod.namespace", "operator": "Exists"})
    if labels:
        out["matchLabels"] = labels
    if exprs:
        out["matchExpressions"] = exprs
    return out


def _rule(rule: dict[str, Any], direction: str) -> dict[str, Any]:
    pre = "from" if direction == "ingress" else "to"
    peers = rule.get(pre) or []
    out: dict[str, Any] = {}
    eps = [_endpoint(p) for p in peers if "ipBlock" not in p]
    cidrs = [{"cidr": p["ipBlock"]["cidr"], **({"except": p["ipBlock"]["except"]}
                                                if p["ipBlock"].get("except") else {})}
             for p in peers if "ipBlock" in p]
    if eps:
        out[f"{pre}Endpoints"] = eps
    if cidrs:
        out[f"{pre}CIDRSet"] = cidrs
    ports = []
    for p in rule.get("ports") or []:
        item: dict[str, Any] = {"port": str(p.get("port", 0)),
                                "protocol": p.get("protocol", "TCP")}
        if "endPort" in p:
            item["endPort"] = p["endPort"]
        ports.append(item)
    if ports:
        out["toPorts"] = [{"ports": ports}]
    if not peers and not ports:
        out[f"{pre}Entities"] = ["all"]
    return out


def to_cilium(np: dict[str, Any]) -> dict[str, Any]:
    spec = np.get("spec") or {}
    types = spec.get("policyTypes") or (["Ingress"] + (["Egress"] if spec.get("egress")
                                                       else []))
    cspec: dict[str, Any] = {"endpointSelector": spec.get("podSelector") or {}}
    for t in types:
        d = t.lower()
        cspec[d] = [_rule(r, d) for r in spec.get(d) or []] or [{}]
    return {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
            "metadata": {"name": np["metadata"]["name"],
                         "namespace": np["metadata"].get("namespace", "default")},
            "spec": cspec}


def convert(src: Path, dst: Path, every_other: bool) -> int:
    """Write src's policy files to dst with NetworkPolicies converted (every_other: those
    of every other namespace file only); returns how many Cilium policies it wrote."""
    dst.mkdir(parents=True, exist_ok=True)
    for old in dst.glob("*.yaml"):
        old.unlink()
    n = 0
    for i, f in enumerate(sorted(src.glob("*.yaml"))):
        docs = [d for d in yaml.safe_load_all(f.read_text()) if d]
        out = []
        for d in docs:
            if d.get("kind") != "NetworkPolicy":
                continue  # cluster-scoped tiers: not in a Cilium cluster
            if every_other and i % 2:
                out.append(d)
            else:
                out.append(to_cilium(d))
                n += 1
        if out:
            (dst / f.name).write_text(yaml.safe_dump_all(out, sort_keys=False))
    return n


def main(argv: list[str]) -> int:
    data = Path(argv[1])
    for prefix, every_other in (("cilium", False), ("mixed", True)):
        for which in ("current", "candidate"):
            convert(data / which, data / f"{prefix}-{which}", every_other)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
