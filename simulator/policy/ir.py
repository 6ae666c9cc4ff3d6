"""The policy IR every dialect compiles to, and the evaluator reads.

A Policy selects a Subject (which pods, and in which directions that selection isolates
them), and carries ordered Rules; a Rule admits (or, in later dialects, denies or passes)
traffic from/to Peers on Ports. NetworkPolicy v1 uses tier "namespace", priority 0 and
only "allow" rules; AdminNetworkPolicy (tier "admin", priorities, allow/deny/pass),
BaselineAdminNetworkPolicy (tier "baseline"), Cilium deny rules and Calico/Antrea tiers
fit the same shape without reshaping it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["ingress", "egress"]
Action = Literal["allow", "deny", "pass"]
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


@dataclass(frozen=True)
class CidrPeer:
    cidr: str
    excepts: tuple[str, ...] = ()


@dataclass(frozen=True)
class AnyPeer:
    """Every endpoint: pods, nodes, external addresses."""


Peer = PodPeer | CidrPeer | AnyPeer


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


@dataclass(frozen=True)
class Subject:
    pod_selector: Selector
    namespace: str | None = None
    namespace_selector: Selector | None = None


@dataclass(frozen=True)
class Policy:
    dialect: str
    tier: str
    priority: int
    namespace: str | None
    name: str
    source: str
    subject: Subject
    isolates: frozenset[Direction]
    rules: tuple[Rule, ...]

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name
