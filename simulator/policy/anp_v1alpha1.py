"""policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy: cluster-scoped, the admin tier.

Its subject's traffic is decided by the first of its rules that matches, in the order of
priority (lowest value first) and then as written: Allow and Deny are final, Pass hands
the connection to the NetworkPolicy tier. It isolates nothing: what no rule matches goes
on to the next tier."""

from __future__ import annotations

from ..documents import Document
from .common import Ctx, mapping, no_unknown
from .ir import Policy
from .npapi import GROUP, Notes, cluster_name, ports_v1alpha1, priority, rules, subject

API_VERSION = f"{GROUP}/v1alpha1"
KIND = "AdminNetworkPolicy"
MAX_RULES = 100
ACTIONS = {"Allow": "allow", "Deny": "deny", "Pass": "pass"}


def compile_anp(doc: Document, notes: Notes) -> Policy:
    ctx = Ctx(doc)
    name = cluster_name(ctx, mapping(ctx, doc.obj.get("metadata"), "metadata"))
    spec = mapping(ctx, doc.obj.get("spec"), "spec")
    no_unknown(ctx, spec, {"priority", "subject", "ingress", "egress"}, "spec")
    common = {"actions": ACTIONS, "max_rules": MAX_RULES,
              "ports": {"ports": ports_v1alpha1}, "notes": notes}
    return Policy(
        dialect="adminnetworkpolicy", kind=KIND, tier="admin", priority=priority(ctx, spec),
        namespace=None, name=name, source=f"{doc.path}:{doc.where}",
        subject=subject(ctx, spec), isolates=frozenset(),
        applies=frozenset(("ingress", "egress")),
        rules=rules(ctx, spec, "ingress", peer_fields=("namespaces", "pods"), **common)
        + rules(ctx, spec, "egress", peer_fields=("namespaces", "pods", "nodes", "networks",
                                                  "domainNames"), **common),
    )
