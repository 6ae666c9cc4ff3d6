"""The upstream Kubernetes network-policy e2e model, as data.

Upstream (kubernetes/kubernetes test/e2e/network/netpol) builds three namespaces x, y, z with
pods a, b, c in each; every pod serves ports 80 and 81 over TCP, UDP and SCTP through named
container ports ``serve-<port>-<proto>``. Pods carry ``pod=<name>``, namespaces ``ns=<name>``
plus the automatic ``kubernetes.io/metadata.name``. Each test creates policies, probes every
(from pod, to pod) pair on one port+protocol and compares the outcome against a 9x9
"reachability" truth table.

This module re-expresses those cases in Python: each `Case` carries the policies (plain dicts
that dump to YAML), the probed port and protocol, and the expected `Reachability`. The
expectations are written the way upstream writes them (start from all-allowed, then
`expect_peer` / `expect_all_ingress` / `expect_all_egress` / `expect` adjustments), taken from
the upstream test source. Cases marked ``upstream=False`` are upstream-style cases in the same
model (in the spirit of cyclonus / policy-assistant's generated cases) whose expectations are
derived from the networking.k8s.io/v1 semantics; their titles and the comments next to them
say why the cells are what they are.

Loopback: upstream probes every pod from itself too, but ignores those cells when grading
(``ignoreLoopback``: CNIs disagree about them, kubernetes/kubernetes#95879). A recorded
pod-to-itself flow is ordinary pod traffic for this project (docs/ARCHITECTURE.md,
"Semantics decisions"), so the self cells are graded here, with the values upstream's
reachability tables give them.

Deliberately left out: DNS exceptions (only the probed port is modelled), Service/ClusterIP
destinations, and the multi-step "update" tests are split into one case per step, each step a
static world.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:  # tests/ is a rootdir-style test directory; support both import layouts
    from tests import worldfiles as wf
except ImportError:  # pragma: no cover - depends on how pytest put tests/ on sys.path
    import worldfiles as wf  # type: ignore[no-redef]

NAMESPACES = ("x", "y", "z")
POD_NAMES = ("a", "b", "c")
PORTS = (80, 81)
PROTOCOLS = ("TCP", "UDP", "SCTP")
NS_NAME_LABEL = "kubernetes.io/metadata.name"
NODE_NAME = "node-1"
NODE_IP = "192.168.0.10"
POD_CIDR = "10.0.0.0/16"
FLOW_START = 1_717_000_000
EPHEMERAL_BASE = 40000

ALL_PODS: tuple[str, ...] = tuple(f"{ns}/{p}" for ns in NAMESPACES for p in POD_NAMES)


def split(pod_string: str) -> tuple[str, str]:
    ns, name = pod_string.split("/", 1)
    return ns, name


def pod_ip(pod_string: str) -> str:
    ns, name = split(pod_string)
    return f"10.0.{NAMESPACES.index(ns)}.{POD_NAMES.index(name) + 10}"


IP_TO_POD = {pod_ip(p): p for p in ALL_PODS}


def host_cidr(pod_string: str) -> str:
    return f"{pod_ip(pod_string)}/32"


def container_ports() -> list[tuple[str, int, str]]:
    return [
        (f"serve-{port}-{proto.lower()}", port, proto) for proto in PROTOCOLS for port in PORTS
    ]


# --------------------------------------------------------------------------------------------
# Reachability truth table


@dataclass(frozen=True)
class Peer:
    """Upstream's Peer: an unset field matches everything."""

    namespace: str | None = None
    pod: str | None = None

    def matches(self, pod_string: str) -> bool:
        ns, name = split(pod_string)
        return (self.namespace is None or self.namespace == ns) and (
            self.pod is None or self.pod == name
        )


class Reachability:
    """A from x to truth table over ALL_PODS, like upstream's Reachability."""

    def __init__(self, default: bool = True, pods: Sequence[str] = ALL_PODS) -> None:
        self.pods = tuple(pods)
        self.cells: dict[tuple[str, str], bool] = {
            (f, t): default for f in self.pods for t in self.pods
        }

    def copy(self) -> Reachability:
        other = Reachability(True, self.pods)
        other.cells = dict(self.cells)
        return other

    def expect(self, frm: str, to: str, allowed: bool) -> Reachability:
        self.cells[(frm, to)] = allowed
        return self

    def expect_peer(self, frm: Peer, to: Peer, allowed: bool) -> Reachability:
        for f in self.pods:
            if not frm.matches(f):
                continue
            for t in self.pods:
                if to.matches(t):
                    self.cells[(f, t)] = allowed
        return self

    def expect_all_ingress(self, to: str, allowed: bool) -> Reachability:
        for f in self.pods:
            self.cells[(f, to)] = allowed
        return self

    def expect_all_egress(self, frm: str, allowed: bool) -> Reachability:
        for t in self.pods:
            self.cells[(frm, t)] = allowed
        return self

    def __getitem__(self, key: tuple[str, str]) -> bool:
        return self.cells[key]

    def items(self) -> Iterator[tuple[tuple[str, str], bool]]:
        yield from self.cells.items()


def truth_table(title: str, cell: Mapping[tuple[str, str], str], pods: Sequence[str]) -> str:
    """Render like upstream's truthtable.go: rows are sources, columns destinations."""
    width = max(len(p) for p in pods)
    lines = [title, "-".ljust(width) + "\t" + "\t".join(pods)]
    for f in pods:
        lines.append(f.ljust(width) + "\t" + "\t".join(cell.get((f, t), "?") for t in pods))
    return "\n".join(lines)


def render_expected_observed(
    expected: Reachability, observed: Mapping[tuple[str, str], bool | None]
) -> str:
    """Expected, observed and comparison tables. '.' allowed, 'X' denied, '?' no verdict."""

    def mark(v: bool | None) -> str:
        return "?" if v is None else ("." if v else "X")

    pods = expected.pods
    exp = {k: mark(v) for k, v in expected.items()}
    obs = {k: mark(observed.get(k)) for k in expected.cells}
    cmp = {k: ("." if observed.get(k) == v else "X") for k, v in expected.items()}
    return "\n\n".join(
        [
            truth_table("expected:", exp, pods),
            truth_table("observed:", obs, pods),
            truth_table("comparison (X = differs):", cmp, pods),
        ]
    )


# --------------------------------------------------------------------------------------------
# Policy building blocks (plain dicts, exactly what a user would write in YAML)


def labels(**kv: str) -> dict[str, Any]:
    return {"matchLabels": dict(kv)}


def ns_is(ns: str) -> dict[str, Any]:
    return {"matchLabels": {NS_NAME_LABEL: ns}}


def expr(key: str, operator: str, values: Sequence[str] | None = None) -> dict[str, Any]:
    req: dict[str, Any] = {"key": key, "operator": operator}
    if values is not None:
        req["values"] = list(values)
    return {"matchExpressions": [req]}


def peer(
    pod_selector: Mapping[str, Any] | None = None,
    ns_selector: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if pod_selector is not None:
        out["podSelector"] = dict(pod_selector)
    if ns_selector is not None:
        out["namespaceSelector"] = dict(ns_selector)
    return out


def ip_block(cidr: str, except_: Sequence[str] = ()) -> dict[str, Any]:
    block: dict[str, Any] = {"cidr": cidr}
    if except_:
        block["except"] = list(except_)
    return {"ipBlock": block}


def port(
    number: int | str | None = None,
    protocol: str | None = None,
    end_port: int | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if protocol is not None:
        out["protocol"] = protocol
    if number is not None:
        out["port"] = number
    if end_port is not None:
        out["endPort"] = end_port
    return out


def rule(
    peers: Sequence[Mapping[str, Any]] | None = None,
    ports: Sequence[Mapping[str, Any]] | None = None,
    *,
    direction: str = "from",
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if peers is not None:
        out[direction] = [dict(p) for p in peers]
    if ports is not None:
        out["ports"] = [dict(p) for p in ports]
    return out


def egress_rule(
    peers: Sequence[Mapping[str, Any]] | None = None,
    ports: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    return rule(peers, ports, direction="to")


_UNSET: Any = object()


def policy(
    ns: str,
    name: str,
    pod_selector: Mapping[str, Any] | None = None,
    *,
    ingress: Sequence[Mapping[str, Any]] | None = _UNSET,
    egress: Sequence[Mapping[str, Any]] | None = _UNSET,
    policy_types: Sequence[str] | None = _UNSET,
) -> dict[str, Any]:
    """A NetworkPolicy the way upstream's GenNetworkPolicy + SetSpec*Rules builds it.

    Passing `ingress` (even `[]`) adds "Ingress" to policyTypes, passing `egress` adds
    "Egress", as upstream's SetSpecIngressRules / SetSpecEgressRules do. Pass
    `policy_types=None` to leave policyTypes out of the object altogether (API defaulting is
    then the engine's job), or an explicit list to override.
    """
    spec: dict[str, Any] = {"podSelector": dict(pod_selector or {})}
    types: list[str] = []
    if ingress is not _UNSET:
        spec["ingress"] = [dict(r) for r in ingress] if ingress is not None else None
        types.append("Ingress")
    if egress is not _UNSET:
        spec["egress"] = [dict(r) for r in egress] if egress is not None else None
        types.append("Egress")
    if policy_types is _UNSET:
        spec["policyTypes"] = types
    elif policy_types is not None:
        spec["policyTypes"] = list(policy_types)
    spec = {k: v for k, v in spec.items() if v is not None}
    return wf.netpol(ns, name, spec)


# --------------------------------------------------------------------------------------------
# Cases


@dataclass
class Case:
    id: str
    title: str
    policies: list[dict[str, Any]]
    port: int
    protocol: str
    reachability: Reachability
    upstream: bool = True
    # Static label changes to the base world (used for upstream's "updated label" tests).
    ns_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    pod_labels: dict[str, dict[str, str]] = field(default_factory=dict)


def all_allowed() -> Reachability:
    return Reachability(True)


X, Y, Z = NAMESPACES


def _cases() -> list[Case]:
    cases: list[Case] = []

    def add(
        id_: str,
        title: str,
        policies: Iterable[dict[str, Any]],
        port_: int,
        proto: str,
        reach: Reachability,
        **kw: Any,
    ) -> None:
        cases.append(Case(id_, title, list(policies), port_, proto, reach, **kw))

    # ---- default deny ----------------------------------------------------------------------
    deny_ingress = policy(X, "deny-ingress", {}, ingress=[])
    r = all_allowed().expect_peer(Peer(), Peer(X), False)
    add("default-deny-ingress", "should support a 'default-deny-ingress' policy",
        [deny_ingress], 80, "TCP", r)

    deny_all = policy(X, "deny-all", {}, ingress=[], egress=[])
    r = all_allowed().expect_peer(Peer(), Peer(X), False).expect_peer(Peer(X), Peer(), False)
    add("default-deny-all", "should support a 'default-deny-all' policy", [deny_all], 80, "TCP", r)

    # ---- pod / namespace selectors ------------------------------------------------------
    p = policy(X, "x-a-allows-x-b", labels(pod="a"), ingress=[rule([peer(labels(pod="b"))])])
    r = all_allowed().expect_all_ingress("x/a", False).expect("x/b", "x/a", True)
    add("ingress-podselector-same-ns",
        "should enforce policy to allow traffic from pods within server namespace based on "
        "PodSelector", [p], 80, "TCP", r)

    allow_all_to_a = policy(X, "allow-all-to-a", labels(pod="a"),
                            ingress=[rule([peer({}, {})])])
    r = (all_allowed().expect_all_ingress("x/a", True).expect_all_ingress("x/b", False)
         .expect_all_ingress("x/c", False))
    add("ingress-allow-for-target", "should enforce policy to allow ingress traffic for a target",
        [policy(X, "deny-all", {}, ingress=[]), allow_all_to_a], 80, "TCP", r)

    p = policy(X, "allow-from-another-ns", labels(pod="a"),
               ingress=[rule([peer(None, {"matchLabels": {}})])])
    add("ingress-from-all-namespaces",
        "should enforce policy to allow ingress traffic from pods in all namespaces",
        [p], 80, "TCP", all_allowed())

    p = policy(X, "allow-client-a-via-ns-selector", labels(pod="a"),
               ingress=[rule([peer(None, ns_is(Y))])])
    r_only_y_to_xa = (all_allowed().expect_peer(Peer(X), Peer(X, "a"), False)
                      .expect_peer(Peer(Z), Peer(X, "a"), False))
    add("ingress-nsselector-other-ns",
        "should enforce policy to allow traffic only from a different namespace, based on "
        "NamespaceSelector", [p], 80, "TCP", r_only_y_to_xa.copy())

    p = policy(X, "x-a-allows-x-b", labels(pod="a"),
               ingress=[rule([peer(expr("pod", "In", ["b"]))])])
    r = all_allowed().expect_all_ingress("x/a", False).expect("x/b", "x/a", True)
    add("ingress-podselector-matchexpressions-in",
        "should enforce policy based on PodSelector with MatchExpressions", [p], 80, "TCP", r)

    p = policy(X, "allow-ns-y-match-selector", labels(pod="a"),
               ingress=[rule([peer(None, expr(NS_NAME_LABEL, "In", [Y]))])])
    add("ingress-nsselector-matchexpressions-in",
        "should enforce policy based on NamespaceSelector with MatchExpressions",
        [p], 80, "TCP", r_only_y_to_xa.copy())

    p = policy(X, "allow-ns-y-match-selector", labels(pod="a"),
               ingress=[rule([peer(None, expr(NS_NAME_LABEL, "NotIn", [X])),
                              peer(labels(pod="b"))])])
    r = all_allowed().expect("x/a", "x/a", False).expect("x/c", "x/a", False)
    add("ingress-podselector-or-nsselector",
        "should enforce policy based on PodSelector or NamespaceSelector", [p], 80, "TCP", r)

    p = policy(X, "allow-ns-y-podselector-and-nsselector", labels(pod="a"),
               ingress=[rule([peer(labels(pod="b"), expr(NS_NAME_LABEL, "NotIn", [X]))])])
    r = (all_allowed().expect_all_ingress("x/a", False).expect("y/b", "x/a", True)
         .expect("z/b", "x/a", True))
    add("ingress-podselector-and-nsselector",
        "should enforce policy based on PodSelector and NamespaceSelector", [p], 80, "TCP", r)

    p = policy(X, "allow-ns-y-z-pod-b-c", labels(pod="a"),
               ingress=[rule([peer(expr("pod", "In", ["b", "c"]),
                                   expr(NS_NAME_LABEL, "NotIn", [X]))])])
    r = (all_allowed().expect_peer(Peer(X), Peer(X, "a"), False).expect("y/a", "x/a", False)
         .expect("z/a", "x/a", False))
    add("ingress-multiple-podselectors-and-nsselectors",
        "should enforce policy based on Multiple PodSelectors and NamespaceSelectors",
        [p], 80, "TCP", r)

    p = policy(X, "allow-ns-x-pod-b-c", labels(pod="a"),
               ingress=[rule([peer(labels(pod="b")), peer(labels(pod="c"))])])
    r = (all_allowed().expect_all_ingress("x/a", False).expect("x/b", "x/a", True)
         .expect("x/c", "x/a", True))
    add("ingress-any-podselectors", "should enforce policy based on any PodSelectors",
        [p], 80, "TCP", r)

    for proto in PROTOCOLS:
        pol = policy(X, "allow-ns-y-pod-a-via-namespace-pod-selector", labels(pod="a"),
                     ingress=[rule([peer(labels(pod="a"), ns_is(Y))])])
        r = all_allowed().expect_all_ingress("x/a", False).expect("y/a", "x/a", True)
        add(f"ingress-pod-in-other-ns-pod-and-ns-selector-{proto.lower()}",
            "should enforce policy to allow traffic only from a pod in a different namespace "
            f"based on PodSelector and NamespaceSelector ({proto})", [pol], 80, proto, r)

    # ---- ports ------------------------------------------------------------------------------
    def allow_81_from_y(proto: str, name: str) -> dict[str, Any]:
        return policy(X, name, labels(pod="a"),
                      ingress=[rule([peer(None, ns_is(Y))], [port(81, proto)])])

    for proto, name in (("TCP", "allow-client-a-via-ns-selector"),
                        ("UDP", "allow-ingress-on-port-81-ns-x"),
                        ("SCTP", "allow-ingress-on-port-81-ns-x")):
        add(f"ingress-ports-81-{proto.lower()}",
            f"should enforce policy based on Ports ({proto})",
            [allow_81_from_y(proto, name)], 81, proto, r_only_y_to_xa.copy())

    p81 = allow_81_from_y("TCP", "allow-client-a-via-ns-selector")
    add("stacked-policies-port-81",
        "should enforce multiple, stacked policies with overlapping podSelectors (port 81)",
        [p81], 81, "TCP", r_only_y_to_xa.copy())
    add("stacked-policies-port-80-denied",
        "should enforce multiple, stacked policies with overlapping podSelectors (port 80 "
        "before the port-80 policy)", [p81], 80, "TCP",
        all_allowed().expect_all_ingress("x/a", False))
    p80 = policy(X, "allow-client-a-via-ns-selector-80", labels(pod="a"),
                 ingress=[rule([peer(None, ns_is(Y))], [port(80, "TCP")])])
    add("stacked-policies-port-80-unblocked",
        "should enforce multiple, stacked policies with overlapping podSelectors (port 80 "
        "after adding the port-80 policy)", [p81, p80], 80, "TCP", r_only_y_to_xa.copy())

    allow_all = policy(X, "allow-all", {"matchLabels": {}}, ingress=[{}])
    for prt in PORTS:
        add(f"allow-all-port-{prt}", "should support allow-all policy", [allow_all], prt, "TCP",
            all_allowed())

    # ---- named ports ---------------------------------------------------------------------
    p = policy(X, "allow-all", {"matchLabels": {}}, ingress=[rule(None, [port("serve-81-tcp")])])
    add("ingress-named-port-81-allowed", "should allow ingress access on one named port (81)",
        [p], 81, "TCP", all_allowed())
    add("ingress-named-port-80-denied", "should allow ingress access on one named port (80)",
        [p], 80, "TCP", all_allowed().expect_peer(Peer(), Peer(X), False))

    p = policy(X, "allow-client-a-via-ns-selector-80", labels(pod="a"),
               ingress=[rule([peer(None, ns_is(Y))], [port("serve-80-tcp", "TCP")])])
    add("ingress-ns-named-port-80",
        "should allow ingress access from namespace on one named port (80 allowed for y)",
        [p], 80, "TCP", r_only_y_to_xa.copy())
    add("ingress-ns-named-port-81-denied",
        "should allow ingress access from namespace on one named port (81 blocked)",
        [p], 81, "TCP", all_allowed().expect_all_ingress("x/a", False))

    p = policy(X, "allow-egress", {"matchLabels": {}}, egress=[egress_rule(None,
                                                                            [port("serve-80-tcp")])])
    add("egress-named-port-80", "should allow egress access on one named port (80)",
        [p], 80, "TCP", all_allowed())
    add("egress-named-port-81-denied", "should allow egress access on one named port (81)",
        [p], 81, "TCP", all_allowed().expect_peer(Peer(X), Peer(), False))

    # ---- updated policy / labels (one case per step) -------------------------------------
    add("updated-policy-allow-all", "should enforce updated policy (before: ingress [{}])",
        [policy(X, "allow-all-mutate-to-deny-all", {"matchLabels": {}}, ingress=[{}])],
        81, "TCP", all_allowed())
    add("updated-policy-deny-all", "should enforce updated policy (after: ingress [])",
        [policy(X, "allow-all-mutate-to-deny-all", {"matchLabels": {}}, ingress=[])],
        81, "TCP", all_allowed().expect_peer(Peer(), Peer(X), False))

    p = policy(X, "allow-client-a-via-ns-selector", labels(pod="a"),
               ingress=[rule([peer(None, labels(ns2="updated"))])])
    add("ingress-updated-namespace-before",
        "should allow ingress access from updated namespace (before label)", [p], 80, "TCP",
        all_allowed().expect_all_ingress("x/a", False))
    add("ingress-updated-namespace-after",
        "should allow ingress access from updated namespace (y labelled ns2=updated)",
        [p], 80, "TCP",
        all_allowed().expect_all_ingress("x/a", False).expect_peer(Peer(Y), Peer(), True),
        ns_labels={Y: {"ns2": "updated"}})

    p = policy(X, "allow-client-a-via-pod-selector", labels(pod="a"),
               ingress=[rule([peer(labels(pod="b", pod2="updated"))])])
    add("ingress-updated-pod-before",
        "should allow ingress access from updated pod (before label)", [p], 80, "TCP",
        all_allowed().expect_all_ingress("x/a", False))
    add("ingress-updated-pod-after",
        "should allow ingress access from updated pod (x/b labelled pod2=updated)", [p], 80,
        "TCP", all_allowed().expect_all_ingress("x/a", False).expect("x/b", "x/a", True),
        pod_labels={"x/b": {"pod2": "updated"}})

    p = policy(X, "deny-empty-policy", {}, ingress=[rule([peer({"matchLabels": {}})])])
    add("ingress-deny-from-other-namespaces",
        "should deny ingress from pods on other namespaces (allow same namespace)", [p], 80, "TCP",
        all_allowed().expect_peer(Peer(Y), Peer(X), False).expect_peer(Peer(Z), Peer(X), False))

    p = policy(X, "deny-ingress-via-label-selector", labels(target="isolated"), ingress=[])
    add("ingress-deny-updated-pod-before", "should deny ingress access to updated pod (before)",
        [p], 80, "TCP", all_allowed())
    add("ingress-deny-updated-pod-after",
        "should deny ingress access to updated pod (x/a labelled target=isolated)", [p], 80,
        "TCP", all_allowed().expect_all_ingress("x/a", False),
        pod_labels={"x/a": {"target": "isolated"}})

    # ---- egress -----------------------------------------------------------------------------
    p = policy(X, "deny-egress-pod-a", labels(pod="a"), egress=[])
    add("egress-deny-podselector", "should deny egress from pods based on PodSelector",
        [p], 80, "TCP", all_allowed().expect_all_egress("x/a", False))

    p = policy(X, "deny-egress-ns-x", {}, egress=[])
    add("egress-deny-all-pods-in-ns", "should deny egress from all pods in a namespace",
        [p], 80, "TCP", all_allowed().expect_peer(Peer(X), Peer(), False))

    p = policy(X, "allow-client-a-via-pod-selector", labels(pod="a"),
               ingress=[rule([peer(labels(pod="b"))])],
               egress=[egress_rule(None, [port(80)])],
               policy_types=["Egress", "Ingress"])
    add("ingress-egress-together-80", "should work with Ingress, Egress specified together (80)",
        [p], 80, "TCP",
        all_allowed().expect_all_ingress("x/a", False).expect("x/b", "x/a", True))
    add("ingress-egress-together-81", "should work with Ingress, Egress specified together (81)",
        [p], 81, "TCP",
        all_allowed().expect_all_ingress("x/a", False).expect_all_egress("x/a", False)
        .expect("x/b", "x/a", True))

    eg = policy(X, "allow-to-ns-y-pod-a", labels(pod="a"),
                egress=[egress_rule([peer(labels(pod="a"), ns_is(Y))])])
    ing_rule = rule([peer(labels(pod="a"), ns_is(X))])
    r = (all_allowed().expect_peer(Peer(X, "a"), Peer(), False)
         .expect_peer(Peer(), Peer(Y, "a"), False)
         .expect_peer(Peer(X, "a"), Peer(Y, "a"), True)
         .expect_peer(Peer(), Peer(Y, "b"), False))
    add("egress-client-side-deny-beats-server-allow",
        "should support denying of egress traffic on the client side (even if the server "
        "explicitly allows this traffic)",
        [eg,
         policy(Y, "allow-from-xa-on-ya-match-selector", labels(pod="a"), ingress=[ing_rule]),
         policy(Y, "allow-from-xa-on-yb-match-selector", labels(pod="b"), ingress=[ing_rule])],
        80, "TCP", r)

    add("egress-pod-and-ns-selector",
        "should enforce egress policy allowing traffic to a server in a different namespace "
        "based on PodSelector and NamespaceSelector", [eg], 80, "TCP",
        all_allowed().expect_all_egress("x/a", False).expect("x/a", "y/a", True))

    # ---- protocols ----------------------------------------------------------------------------
    p = policy(X, "allow-ingress-by-proto", labels(pod="a"), ingress=[rule(None, [port(None,
                                                                                       "TCP")])])
    add("ingress-any-port-tcp-only-probe-tcp",
        "should enforce ingress policy allowing any port traffic to a server on a specific "
        "protocol (TCP)", [p], 80, "TCP", all_allowed())
    add("ingress-any-port-tcp-only-probe-udp",
        "should enforce ingress policy allowing any port traffic to a server on a specific "
        "protocol (UDP)", [p], 80, "UDP",
        all_allowed().expect_peer(Peer(), Peer(X, "a"), False))

    p1 = policy(X, "allow-ingress-port-80", {"matchLabels": {}}, ingress=[rule(None, [port(80)])])
    p2 = policy(X, "allow-ingress", {"matchLabels": {}}, ingress=[{}])
    add("multiple-ingress-port-80-only",
        "should enforce multiple ingress policies with ingress allow-all policy taking "
        "precedence (before allow-all)", [p1], 81, "TCP",
        all_allowed().expect_peer(Peer(), Peer(X), False))
    add("multiple-ingress-allow-all-wins",
        "should enforce multiple ingress policies with ingress allow-all policy taking "
        "precedence", [p1, p2], 81, "TCP", all_allowed())

    p1 = policy(X, "allow-egress-port-80", {"matchLabels": {}},
                egress=[egress_rule(None, [port(80)])])
    p2 = policy(X, "allow-egress", {"matchLabels": {}}, egress=[{}])
    add("multiple-egress-port-80-only",
        "should enforce multiple egress policies with egress allow-all policy taking "
        "precedence (before allow-all)", [p1], 81, "TCP",
        all_allowed().expect_peer(Peer(X), Peer(), False))
    add("multiple-egress-allow-all-wins",
        "should enforce multiple egress policies with egress allow-all policy taking "
        "precedence", [p1, p2], 81, "TCP", all_allowed())

    add("policies-deleted",
        "should stop enforcing policies after they are deleted (no policies left)",
        [], 80, "TCP", all_allowed())

    # ---- ipBlock --------------------------------------------------------------------------
    p = policy(X, "allow-client-a-via-cidr-egress-rule", labels(pod="a"),
               egress=[egress_rule([ip_block(host_cidr("y/b"))])])
    add("egress-cidr-block", "should allow egress access to server in CIDR block",
        [p], 80, "TCP",
        all_allowed().expect_all_egress("x/a", False).expect("x/a", "y/b", True))

    # Upstream builds the /4 around x/a's (resp. x/b's) IP; 10.0.x.y lies in 0.0.0.0/4.
    except_policy = policy(X, "allow-client-a-via-cidr-egress-rule", labels(pod="a"),
                           egress=[egress_rule([ip_block("0.0.0.0/4", [host_cidr("x/b")])])])
    add("egress-cidr-except",
        "should enforce except clause while egress access to server in CIDR block",
        [except_policy], 80, "TCP", all_allowed().expect("x/a", "x/b", False))
    p = policy(X, "allow-client-a-via-cidr-egress-rule", labels(pod="a"),
               egress=[egress_rule([ip_block(host_cidr("x/b"))])])
    add("egress-cidr-except-then-host-allow",
        "should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed (after "
        "the policy is updated to allow x/b's /32)", [p], 80, "TCP",
        all_allowed().expect_all_egress("x/a", False).expect("x/a", "x/b", True))

    # ---- independent ingress/egress ------------------------------------------------------
    eg_all = policy(X, "allow-egress-for-target", labels(pod="a"), egress=[{}])
    add("ingress-egress-independent-egress-only",
        "should enforce policies to check ingress and egress policies can be controlled "
        "independently based on PodSelector (allow-egress only)", [eg_all], 80, "TCP",
        all_allowed())
    add("ingress-egress-independent-deny-ingress",
        "should enforce policies to check ingress and egress policies can be controlled "
        "independently based on PodSelector", [eg_all,
                                               policy(X, "deny-ingress-via-label-selector",
                                                      labels(pod="a"), ingress=[])],
        80, "TCP", all_allowed().expect_all_ingress("x/a", False))

    # ---- SCTP / UDP isolation -------------------------------------------------------------
    p = policy(X, "allow-only-sctp-ingress-on-port-81", labels(pod="a"),
               ingress=[rule(None, [port(81, "SCTP")])])
    add("sctp-not-treated-as-tcp",
        "should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP'", [deny_ingress, p],
        81, "TCP", all_allowed().expect_peer(Peer(), Peer(X), False))
    p = policy(X, "allow-only-sctp-ingress-on-port-80", labels(pod="a"),
               ingress=[rule(None, [port(80, "SCTP")])])
    add("sctp-policy-isolates-pod",
        "should properly isolate pods that are selected by a policy allowing SCTP", [p],
        81, "TCP", all_allowed().expect_all_ingress("x/a", False))
    p = policy(X, "allow-only-udp-ingress-on-port-81", labels(pod="a"),
               ingress=[rule(None, [port(81, "UDP")])])
    add("udp-only-policy-blocks-tcp",
        "should not allow access by TCP when a policy specifies only UDP", [p], 81, "TCP",
        all_allowed().expect_all_ingress("x/a", False))

    # ---- default namespace label -------------------------------------------------------------
    p = policy(X, "allow-client-a-via-ns-selector-for-immutable-ns-label", labels(pod="a"),
               ingress=[rule([peer(None, ns_is(Y))])])
    add("default-ns-label-matchlabels",
        "should enforce policy to allow traffic based on NamespaceSelector with MatchLabels "
        "using default ns label", [p], 80, "TCP", r_only_y_to_xa.copy())
    p = policy(X, "allow-ns-y-match-selector-for-immutable-ns-label", labels(pod="a"),
               egress=[egress_rule([peer(None, expr(NS_NAME_LABEL, "NotIn", [Y]))])])
    add("default-ns-label-matchexpressions-egress",
        "should enforce policy based on NamespaceSelector with MatchExpressions using default "
        "ns label", [p], 80, "TCP", all_allowed().expect_peer(Peer(X, "a"), Peer(Y), False))

    # ---- UDP / SCTP default deny ----------------------------------------------------------
    for proto in ("UDP", "SCTP"):
        add(f"default-deny-ingress-{proto.lower()}",
            f"should support a 'default-deny-ingress' policy ({proto})",
            [policy(X, "deny-all", {}, ingress=[])], 80, proto,
            all_allowed().expect_peer(Peer(), Peer(X), False))

    # ================= upstream-style cases (expectations derived from the API semantics) ==

    def extra(*args: Any, **kw: Any) -> None:
        add(*args, upstream=False, **kw)

    # matchExpressions operators
    p = policy(X, "from-not-a-or-b", labels(pod="a"),
               ingress=[rule([peer(expr("pod", "NotIn", ["a", "b"]))])])
    # podSelector alone = same namespace; NotIn [a, b] leaves x/c.
    extra("ingress-podselector-notin", "podSelector NotIn (same namespace, only x/c)", [p], 80,
          "TCP", all_allowed().expect_all_ingress("x/a", False).expect("x/c", "x/a", True))

    p = policy(X, "from-any-labelled-pod", labels(pod="a"),
               ingress=[rule([peer(expr("pod", "Exists"), {})])])
    extra("ingress-podselector-exists-all-ns",
          "podSelector Exists + empty namespaceSelector (every pod has label pod)", [p], 80,
          "TCP", all_allowed())

    p = policy(X, "from-unlabelled-pods", labels(pod="a"),
               ingress=[rule([peer(expr("pod", "DoesNotExist"), {})])])
    extra("ingress-podselector-doesnotexist",
          "podSelector DoesNotExist matches no pod: x/a isolated, nothing allowed", [p], 80, "TCP",
          all_allowed().expect_all_ingress("x/a", False))

    p = policy(X, "from-ns-without-ns2", labels(pod="a"),
               ingress=[rule([peer(None, expr("ns2", "DoesNotExist"))])])
    extra("ingress-nsselector-doesnotexist",
          "namespaceSelector DoesNotExist (y carries ns2=updated, so y is denied)", [p], 80, "TCP",
          all_allowed().expect_peer(Peer(Y), Peer(X, "a"), False),
          ns_labels={Y: {"ns2": "updated"}})

    p = policy(X, "from-ns-with-ns-label", labels(pod="a"),
               ingress=[rule([peer(None, expr("ns", "Exists"))])])
    extra("ingress-nsselector-exists", "namespaceSelector Exists on ns label (all namespaces)",
          [p], 80, "TCP", all_allowed())

    p = policy(X, "from-ns-y-or-z", labels(pod="a"),
               ingress=[rule([peer(None, expr("ns", "In", [Y, Z]))])])
    extra("ingress-nsselector-custom-label-in", "namespaceSelector In on the ns=<name> label",
          [p], 80, "TCP", all_allowed().expect_peer(Peer(X), Peer(X, "a"), False))

    # policyTypes / empty rule lists
    p = policy(X, "egress-rules-no-policytypes", labels(pod="a"),
               egress=[egress_rule([peer({})])], policy_types=None)
    # Defaulting: policyTypes absent + egress present => [Ingress, Egress]; no ingress rules.
    extra("policytypes-defaulted-from-egress-section",
          "policyTypes omitted with an egress section: Ingress is implied too", [p], 80, "TCP",
          all_allowed().expect_all_ingress("x/a", False).expect_all_egress("x/a", False)
          .expect_peer(Peer(X, "a"), Peer(X), True).expect("x/a", "x/a", False))

    p = policy(X, "ingress-rules-no-policytypes", labels(pod="a"),
               ingress=[rule([peer(labels(pod="b"))])], policy_types=None)
    extra("policytypes-defaulted-ingress-only",
          "policyTypes omitted, ingress section only: Ingress only", [p], 80, "TCP",
          all_allowed().expect_all_ingress("x/a", False).expect("x/b", "x/a", True))

    p = policy(X, "egress-type-ignores-ingress", labels(pod="a"), ingress=[], egress=[],
               policy_types=["Egress"])
    extra("policytypes-egress-only-ignores-ingress-list",
          "policyTypes [Egress] with ingress: [] present: ingress is not isolated", [p], 80,
          "TCP", all_allowed().expect_all_egress("x/a", False))

    p = policy(X, "types-without-rules", {}, policy_types=["Ingress", "Egress"])
    extra("policytypes-both-no-rule-fields",
          "policyTypes [Ingress, Egress] with no ingress/egress fields denies both", [p], 80,
          "TCP", all_allowed().expect_peer(Peer(), Peer(X), False)
          .expect_peer(Peer(X), Peer(), False))

    p = policy(X, "empty-from-list", {}, ingress=[{"from": [], "ports": [port(80)]}])
    extra("ingress-empty-from-list", "ingress rule with from: [] matches all sources", [p], 80,
          "TCP", all_allowed())

    p = policy(X, "egress-same-ns", {}, egress=[egress_rule([peer({})])])
    extra("egress-empty-podselector-same-ns",
          "egress to podSelector {} allows only the policy's own namespace", [p], 80, "TCP",
          all_allowed().expect_peer(Peer(X), Peer(), False).expect_peer(Peer(X), Peer(X), True))

    p = policy(X, "egress-to-ns-y", labels(pod="a"),
               egress=[egress_rule([peer(None, labels(ns=Y))])])
    extra("egress-to-namespace", "egress from x/a to namespace y only", [p], 80, "TCP",
          all_allowed().expect_all_egress("x/a", False).expect_peer(Peer(X, "a"), Peer(Y), True))

    p = policy(X, "egress-all-namespaces", labels(pod="a"),
               egress=[egress_rule([peer(None, {})], [port(81)])])
    extra("egress-all-namespaces-wrong-port",
          "egress to namespaceSelector {} on port 81, probed on 80: denied", [p], 80, "TCP",
          all_allowed().expect_all_egress("x/a", False))

    # multiple policies union
    pol_b = policy(X, "from-x-b", labels(pod="a"), ingress=[rule([peer(labels(pod="b"))])])
    pol_y = policy(X, "from-ns-y", labels(pod="a"), ingress=[rule([peer(None, ns_is(Y))])])
    extra("ingress-union-of-policies", "two ingress policies on x/a are additive", [pol_b, pol_y],
          80, "TCP", all_allowed().expect_all_ingress("x/a", False).expect("x/b", "x/a", True)
          .expect_peer(Peer(Y), Peer(X, "a"), True))

    # ingress and egress both have to allow
    extra("ingress-and-egress-both-required",
          "egress deny on x (all pods) and ingress allow on y/a from x/a", [
              policy(X, "deny-egress-ns-x", {}, egress=[]),
              policy(Y, "allow-from-xa", labels(pod="a"),
                     ingress=[rule([peer(labels(pod="a"), ns_is(X))])])],
          80, "TCP",
          all_allowed().expect_peer(Peer(X), Peer(), False).expect_all_ingress("y/a", False))

    # endPort ranges
    p = policy(X, "from-y-80-81", labels(pod="a"),
               ingress=[rule([peer(None, ns_is(Y))], [port(80, "TCP", end_port=81)])])
    for prt in PORTS:
        extra(f"ingress-endport-range-covers-{prt}",
              f"ingress port 80 endPort 81 from namespace y, probed on {prt}", [p], prt, "TCP",
              r_only_y_to_xa.copy())
    p = policy(X, "range-79-80", labels(pod="a"),
               ingress=[rule(None, [port(79, "TCP", end_port=80)])])
    extra("ingress-endport-range-excludes-81", "ingress port 79 endPort 80, probed on 81",
          [p], 81, "TCP", all_allowed().expect_all_ingress("x/a", False))
    p = policy(X, "egress-udp-81-90", {},
               egress=[egress_rule(None, [port(81, "UDP", end_port=90)])])
    extra("egress-endport-udp-in-range", "egress UDP 81-90 from all of x, probed UDP 81",
          [p], 81, "UDP", all_allowed())
    extra("egress-endport-udp-below-range", "egress UDP 81-90 from all of x, probed UDP 80",
          [p], 80, "UDP", all_allowed().expect_peer(Peer(X), Peer(), False))
    extra("egress-endport-udp-wrong-protocol", "egress UDP 81-90 from all of x, probed TCP 81",
          [p], 81, "TCP", all_allowed().expect_peer(Peer(X), Peer(), False))

    # named ports whose protocol differs
    p = policy(X, "named-udp-port-default-tcp", labels(pod="a"),
               ingress=[rule(None, [port("serve-81-udp")])])
    for proto in ("TCP", "UDP"):
        extra(f"ingress-named-udp-port-default-protocol-probe-{proto.lower()}",
              "named port serve-81-udp with protocol defaulted to TCP resolves to nothing "
              f"(probed {proto} 81)", [p], 81, proto,
              all_allowed().expect_all_ingress("x/a", False))
    p = policy(X, "named-udp-port-udp", labels(pod="a"),
               ingress=[rule(None, [port("serve-81-udp", "UDP")])])
    extra("ingress-named-udp-port-udp-probe-udp",
          "named port serve-81-udp with protocol UDP, probed UDP 81", [p], 81, "UDP",
          all_allowed())
    extra("ingress-named-udp-port-udp-probe-tcp",
          "named port serve-81-udp with protocol UDP, probed TCP 81", [p], 81, "TCP",
          all_allowed().expect_all_ingress("x/a", False))
    p = policy(X, "named-tcp-name-udp-protocol", labels(pod="a"),
               ingress=[rule(None, [port("serve-80-tcp", "UDP")])])
    extra("ingress-named-tcp-port-with-udp-protocol",
          "named port serve-80-tcp with protocol UDP resolves to nothing (probed UDP 80)",
          [p], 80, "UDP", all_allowed().expect_all_ingress("x/a", False))
    p = policy(X, "egress-named-udp", {},
               egress=[egress_rule(None, [port("serve-80-udp", "UDP")])])
    extra("egress-named-udp-port-probe-udp-80", "egress to named port serve-80-udp (UDP 80)",
          [p], 80, "UDP", all_allowed())
    extra("egress-named-udp-port-probe-udp-81", "egress to named port serve-80-udp (UDP 81)",
          [p], 81, "UDP", all_allowed().expect_peer(Peer(X), Peer(), False))
    p = policy(X, "named-sctp", labels(pod="a"),
               ingress=[rule([peer(None, ns_is(Y))], [port("serve-80-sctp", "SCTP")])])
    extra("ingress-named-sctp-port-probe-sctp-80",
          "named port serve-80-sctp from namespace y (SCTP 80)", [p], 80, "SCTP",
          r_only_y_to_xa.copy())
    extra("ingress-named-sctp-port-probe-sctp-81",
          "named port serve-80-sctp from namespace y (SCTP 81)", [p], 81, "SCTP",
          all_allowed().expect_all_ingress("x/a", False))

    # ipBlock on ingress with except, using pod IPs
    p = policy(X, "from-pod-cidr-except-y", labels(pod="a"),
               ingress=[rule([ip_block("10.0.0.0/16", ["10.0.1.0/24"])])])
    extra("ingress-ipblock-except", "ingress from 10.0.0.0/16 except y's 10.0.1.0/24", [p], 80,
          "TCP", all_allowed().expect_peer(Peer(Y), Peer(X, "a"), False))
    p = policy(X, "egress-cidr-except-two", labels(pod="a"),
               egress=[egress_rule([ip_block("10.0.0.0/8", [host_cidr("y/a"), "10.0.2.0/24"])],
                                   [port(80, "UDP")])])
    extra("egress-ipblock-except-udp",
          "egress UDP 80 to 10.0.0.0/8 except y/a's /32 and z's /24", [p], 80, "UDP",
          all_allowed().expect("x/a", "y/a", False).expect_peer(Peer(X, "a"), Peer(Z), False))

    # deny-all variants on other protocols
    extra("default-deny-egress-udp", "default-deny-egress in x (UDP 81)",
          [policy(X, "deny-egress", {}, egress=[])], 81, "UDP",
          all_allowed().expect_peer(Peer(X), Peer(), False))
    extra("default-deny-all-sctp", "default-deny-all in y (SCTP 81)",
          [policy(Y, "deny-all", {}, ingress=[], egress=[])], 81, "SCTP",
          all_allowed().expect_peer(Peer(), Peer(Y), False).expect_peer(Peer(Y), Peer(), False))

    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    return cases


CASES: list[Case] = _cases()


# --------------------------------------------------------------------------------------------
# World to disk


def cluster_objects(
    ns_labels: Mapping[str, Mapping[str, str]] | None = None,
    pod_labels: Mapping[str, Mapping[str, str]] | None = None,
) -> list[dict[str, Any]]:
    ns_labels = ns_labels or {}
    pod_labels = pod_labels or {}
    objs: list[dict[str, Any]] = [wf.node(NODE_NAME, NODE_IP, [POD_CIDR])]
    for ns in NAMESPACES:
        lbl = {"ns": ns, NS_NAME_LABEL: ns, **ns_labels.get(ns, {})}
        objs.append(wf.namespace(ns, lbl))
    for ps in ALL_PODS:
        ns, name = split(ps)
        lbl = {"pod": name, **pod_labels.get(ps, {})}
        objs.append(wf.pod(ns, name, pod_ip(ps), lbl, container_ports(), node=NODE_NAME))
    return objs


def probes() -> list[tuple[str, str]]:
    """Every (from, to) pair, self-probes included, in a fixed order."""
    return [(f, t) for f in ALL_PODS for t in ALL_PODS]


def flow_records(port_: int, protocol: str) -> list[dict[str, Any]]:
    return [
        wf.vpc_record(
            pod_ip(f),
            pod_ip(t),
            port_,
            protocol,
            src_port=EPHEMERAL_BASE + i,
            start=FLOW_START + i,
        )
        for i, (f, t) in enumerate(probes())
    ]


@dataclass(frozen=True)
class WorldPaths:
    cluster: Path
    policies: Path
    flows: Path
    out: Path


def write_world(directory: Path, case: Case) -> WorldPaths:
    directory.mkdir(parents=True, exist_ok=True)
    cluster = wf.write_cluster(
        directory / "cluster.json", cluster_objects(case.ns_labels, case.pod_labels)
    )
    poldir = directory / "policies"
    wf.write_policies(poldir, copy.deepcopy(case.policies))
    flows = wf.write_vpc_parquet(
        directory / "flows.parquet", flow_records(case.port, case.protocol)
    )
    return WorldPaths(cluster, poldir, flows, directory / "verdicts.parquet")
