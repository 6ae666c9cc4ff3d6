"""The policy IR every dialect compiles to, and the evaluator reads.

A Policy selects a Subject (which pods, and in which directions that selection isolates
them), and carries ordered Rules; a Rule admits (or, in later dialects, denies or passes)
traffic from/to Peers on Ports. NetworkPolicy v1 uses tier "namespace", priority 0 and
only "allow" rules; AdminNetworkPolicy (tier "admin", priorities, allow/deny/pass),
BaselineAdminNetworkPolicy (tier "baseline"), Cilium deny rules and Calico/Antrea tiers
fit the same shape without reshaping it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

Direction = Literal["ingress", "egress"]
# require / require-deny: Cilium's fromRequires/toRequires, which a selected pod's allow
# (deny) rules' endpoint peers must also satisfy, whichever policy they are in
Action = Literal["allow", "deny", "pass", "require", "require-deny"]
DIRECTIONS: tuple[Direction, ...] = ("ingress", "egress")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Selector:
    """A label selector; no requirements matches everything."""

    requirements: tuple[Requirement, ...] = ()


MATCH_ALL = Selector()


@dataclass(frozen=True)
class PodPeer:
    """Pods matching pod_selector, in `namespace` or in namespaces matching
    namespace_selector (exactly one of the two is set)."""

    pod_selector: Selector
    namespace: str | None = None
    namespace_selector: Selector | None = None
    # a Cilium endpoint peer: the subject's requirements (fromRequires) apply to it
    requirable: bool = False


@dataclass(frozen=True)
class CidrPeer:
    """world_only: the prefix matches only addresses outside the cluster (Cilium's CIDR
    rules never select a pod or node, whatever its address)."""

    cidr: str
    excepts: tuple[str, ...] = ()
    world_only: bool = False


@dataclass(frozen=True)
class AnyPeer:
    """Every endpoint: pods, nodes, external addresses."""


@dataclass(frozen=True)
class NodePeer:
    """Nodes whose labels match `selector` (their addresses in the snapshot; host-network
    pods share them). remote_only: never the subject pod's own node (Cilium's
    toNodes/fromNodes extend its remote-node entity)."""

    selector: Selector
    remote_only: bool = False


@dataclass(frozen=True)
class DomainPeer:
    """A destination resolved from a DNS name: `pattern` is a name, or `*.` and a suffix
    (the wildcard stands for one or more whole labels). Judged only where the flow says
    which name the address was resolved from."""

    pattern: str
    # the pattern as a regular expression over lower-case names without the final dot,
    # where a dialect's wildcards differ (Cilium's `*` stays inside one label)
    regex: str | None = None


ENTITIES = ("all", "world", "world-ipv4", "world-ipv6", "cluster", "host", "remote-node",
            "kube-apiserver", "health", "init", "ingress", "unmanaged", "none")


@dataclass(frozen=True)
class EntityPeer:
    """A class of peer without labels of its own (Cilium's entities): `world` is every
    address outside the cluster, `host` the subject's own node, `remote-node` the other
    nodes, `cluster` every pod and node, `kube-apiserver` the addresses behind
    default/kubernetes, `all` everything; `health`, `init`, `ingress`, `unmanaged` and
    `none` name Cilium-internal endpoints no flow record resolves to."""

    entity: str
    requirable: bool = False  # named by a `reserved:` endpoint selector


@dataclass(frozen=True)
class ServicePeer:
    """A Service's backends: by name, or every Service in `namespace` (None: any) whose
    labels match `selector`. Bound to pods or addresses against the cluster snapshot
    before evaluation (policy/services.py)."""

    namespace: str | None
    name: str | None = None
    selector: Selector | None = None


Peer = PodPeer | CidrPeer | AnyPeer | NodePeer | DomainPeer | EntityPeer | ServicePeer


@dataclass(frozen=True)
class PortMatch:
    """protocol None: every protocol and port (a rule without ports). lo/hi: a numeric
    range; name: a named port resolved against the destination pod; neither: all ports
    of the protocol."""

    protocol: str | None
    lo: int | None = None
    hi: int | None = None
    name: str | None = None


ANY_PORT = PortMatch(None)


@dataclass(frozen=True)
class Rule:
    direction: Direction
    index: int
    action: Action
    peers: tuple[Peer, ...]
    ports: tuple[PortMatch, ...]
    name: str | None = None  # a rule's own name, where the dialect has one
    # what the rule says, in a few words, where reasons quote it (Cilium: its peers)
    detail: str | None = None


@dataclass(frozen=True)
class Subject:
    """Pods (pod_selector in `namespace` or in namespaces matching namespace_selector),
    or, with node_selector set, the nodes it matches (Cilium's host policies)."""

    pod_selector: Selector
    namespace: str | None = None
    namespace_selector: Selector | None = None
    node_selector: Selector | None = None


# The tiers a connection passes, in order: first-match tiers decide by their first
# matching rule (priority, then written order); the NetworkPolicy tier is a union that
# denies what it isolates and no rule admits; what no tier decides is allowed.
Tier = Literal["admin", "namespace", "baseline"]
TIERS: tuple[Tier, ...] = ("admin", "namespace", "baseline")


@dataclass(frozen=True)
class Policy:
    """isolates: the directions in which selecting a pod makes it default-deny (the
    NetworkPolicy tier); a first-match tier's policy applies to its subject in `applies`
    without isolating it."""

    dialect: str
    tier: str
    priority: int
    namespace: str | None
    name: str
    source: str
    subject: Subject
    isolates: frozenset[Direction]
    rules: tuple[Rule, ...]
    kind: str = "NetworkPolicy"
    applies: frozenset[Direction] = frozenset()

    @property
    def ref(self) -> str:
        """How verdicts name it: ns/name for a namespaced policy, Kind/name for a
        cluster-scoped one (an AdminNetworkPolicy and a ClusterNetworkPolicy may share a
        name)."""
        return f"{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"

    @property
    def directions(self) -> frozenset[Direction]:
        """The directions in which the policy's rules apply to its subject."""
        return self.isolates | self.applies


def expand_peers(policy: Policy, kind: type, expand: Callable[[Any], Iterable[Peer]]
                 ) -> Policy:
    """The policy with every peer of `kind` (a reference bound after reading: a Service,
    a CIDR group) replaced by what `expand` makes of it; the same policy when it has
    none."""
    if not any(isinstance(p, kind) for r in policy.rules for p in r.peers):
        return policy
    rules = tuple(replace(r, peers=tuple(q for p in r.peers
                                         for q in (expand(p) if isinstance(p, kind)
                                                   else (p,))))
                  for r in policy.rules)
    return replace(policy, rules=rules)
