"""Bind the peers that name Kubernetes Services (Cilium's `toServices`) to what the
cluster snapshot says the Services are: a Service with a selector is the pods it
selects; one without a selector is the addresses of its EndpointSlices (or legacy
Endpoints), which, as the agent turns them into CIDR rules, match outside addresses
only. A Service the snapshot does not hold matches nothing, and the set says so."""

from __future__ import annotations

from ..cluster import Cluster, Service
from .ir import (
    CidrPeer,
    Peer,
    PodPeer,
    Policy,
    Requirement,
    Selector,
    ServicePeer,
    expand_peers,
)


def _matches(selector: Selector, labels: dict[str, str]) -> bool:
    for r in selector.requirements:
        present = r.key in labels
        if r.op == "In" and not (present and labels[r.key] in r.values):
            return False
        if r.op == "NotIn" and present and labels[r.key] in r.values:
            return False
        if r.op == "Exists" and not present:
            return False
        if r.op == "DoesNotExist" and present:
            return False
    return True


def _services(peer: ServicePeer, cluster: Cluster) -> list[Service]:
    return [s for s in cluster.services
            if (peer.namespace is None or s.namespace == peer.namespace)
            and (s.name == peer.name if peer.name is not None
                 else _matches(peer.selector or Selector(), s.labels))]


def _backends(service: Service, cluster: Cluster) -> list[Peer]:
    if service.selector is not None:
        return [PodPeer(Selector(tuple(Requirement(k, "In", (v,))
                                       for k, v in sorted(service.selector.items()))),
                        namespace=service.namespace)]
    return [CidrPeer(f"{ip}/{128 if ':' in ip else 32}", world_only=True)
            for ip in cluster.service_endpoints(service.namespace, service.name)]


def bind_services(policies: list[Policy], cluster: Cluster) -> tuple[list[Policy], list[str]]:
    """The policies with every ServicePeer replaced by its backends, and notes on the
    Services that could not be found."""
    notes: list[str] = []
    out = []
    for policy in policies:
        def backends(p: ServicePeer, source: str = policy.source) -> list[Peer]:
            found = _services(p, cluster)
            if not found:
                what = (f"{p.namespace or '*'}/{p.name}" if p.name
                        else f"the selector in {p.namespace or 'any namespace'}")
                notes.append(f"{source}: toServices: no Service {what} in the cluster "
                             "snapshot; the peer matches nothing")
            return [b for s in found for b in _backends(s, cluster)]

        out.append(expand_peers(policy, ServicePeer, backends))
    return out, notes
