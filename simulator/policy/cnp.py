"""policy.networking.k8s.io ClusterNetworkPolicy (v1alpha2, v1beta1): the successor of
AdminNetworkPolicy and BaselineAdminNetworkPolicy in one kind, its `tier` (Admin or
Baseline) saying which of them it acts as; rules Accept, Deny or Pass, first match by
priority then written order. Ports come as `protocols` (tcp/udp/sctp with a destination
port or range, or a destination named port), or, in early v1alpha2 releases, as the
v1alpha1 `ports`."""

from __future__ import annotations

from ..documents import Document
from .common import Ctx, mapping, no_unknown
from .ir import Policy
from .npapi import (
    GROUP,
    Notes,
    cluster_name,
    ports_v1alpha1,
    priority,
    protocols_v1alpha2,
    rules,
    subject,
)

API_VERSIONS = (f"{GROUP}/v1alpha2", f"{GROUP}/v1beta1")
KIND = "ClusterNetworkPolicy"
MAX_RULES = 25
MAX_PEERS = 25
ACTIONS = {"Accept": "allow", "Deny": "deny", "Pass": "pass"}
TIERS = {"Admin": "admin", "Baseline": "baseline"}


def compile_cnp(doc: Document, notes: Notes) -> Policy:
    ctx = Ctx(doc)
    name = cluster_name(ctx, mapping(ctx, doc.obj.get("metadata"), "metadata"))
    spec = mapping(ctx, doc.obj.get("spec"), "spec")
    no_unknown(ctx, spec, {"tier", "priority", "subject", "ingress", "egress"}, "spec")
    tier = spec.get("tier")
    if tier not in TIERS:
        raise ctx.fail("spec.tier", f"unsupported tier {tier!r}; expected Admin or Baseline")
    common = {"actions": ACTIONS, "max_rules": MAX_RULES, "notes": notes,
              "max_peers": MAX_PEERS, "ns_required": False,
              "ports": {"protocols": protocols_v1alpha2, "ports": ports_v1alpha1}}
    return Policy(
        dialect="clusternetworkpolicy", kind=KIND, tier=TIERS[tier],
        priority=priority(ctx, spec), namespace=None, name=name,
        source=f"{doc.path}:{doc.where}", subject=subject(ctx, spec, ns_required=False),
        isolates=frozenset(),
        applies=frozenset(("ingress", "egress")),
        rules=rules(ctx, spec, "ingress", peer_fields=("namespaces", "pods"), **common)
        + rules(ctx, spec, "egress", peer_fields=("namespaces", "pods", "nodes", "networks",
                                                  "domainNames"), **common),
    )
