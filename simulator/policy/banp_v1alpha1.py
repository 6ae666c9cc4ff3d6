"""policy.networking.k8s.io/v1alpha1 BaselineAdminNetworkPolicy: the cluster's one
baseline (named `default`), consulted after the NetworkPolicy tier for what no
NetworkPolicy isolates: its first matching rule allows or denies; what it does not match
is allowed."""

from __future__ import annotations

from ..documents import Document
from .common import Ctx, mapping, no_unknown
from .ir import Policy
from .npapi import GROUP, Notes, cluster_name, ports_v1alpha1, rules, subject

API_VERSION = f"{GROUP}/v1alpha1"
KIND = "BaselineAdminNetworkPolicy"
NAME = "default"
MAX_RULES = 100
ACTIONS = {"Allow": "allow", "Deny": "deny"}


def compile_banp(doc: Document, notes: Notes) -> Policy:
    ctx = Ctx(doc)
    name = cluster_name(ctx, mapping(ctx, doc.obj.get("metadata"), "metadata"))
    if name != NAME:
        raise ctx.fail("metadata.name", f"a BaselineAdminNetworkPolicy must be named "
                                        f"{NAME!r}, got {name!r}")
    spec = mapping(ctx, doc.obj.get("spec"), "spec")
    no_unknown(ctx, spec, {"subject", "ingress", "egress"}, "spec")
    common = {"actions": ACTIONS, "max_rules": MAX_RULES,
              "ports": {"ports": ports_v1alpha1}, "notes": notes}
    return Policy(
        dialect="baselineadminnetworkpolicy", kind=KIND, tier="baseline", priority=0,
        namespace=None, name=name, source=f"{doc.path}:{doc.where}",
        subject=subject(ctx, spec), isolates=frozenset(),
        applies=frozenset(("ingress", "egress")),
        rules=rules(ctx, spec, "ingress", peer_fields=("namespaces", "pods"), **common)
        + rules(ctx, spec, "egress", peer_fields=("namespaces", "pods", "nodes", "networks"),
                **common),
    )
