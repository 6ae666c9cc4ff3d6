"""How the dataplane enforces policy: one profile per CNI, as data (docs/cni-profiles.md
gives the source of every entry).

The engine judges every connection by the API's semantics; a profile then says what of
that the wire would see: policy kinds the CNI does not enforce are left out before the
evaluation (their rules decide nothing), a CNI that enforces no policy at all (flannel)
or does not filter a protocol leaves such traffic allowed with the reason said, and a CNI
whose CIDR rules never select cluster endpoints (Cilium's identity model) has every
ipBlock match outside addresses only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI lists the profiles before DuckDB is imported
    import duckdb

NP = "NetworkPolicy"
ANP, BANP, CNP = "AdminNetworkPolicy", "BaselineAdminNetworkPolicy", "ClusterNetworkPolicy"
CILIUM = ("CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy")
CALICO = ("projectcalico.org NetworkPolicy", "GlobalNetworkPolicy")
ANTREA = ("crd.antrea.io NetworkPolicy", "crd.antrea.io ClusterNetworkPolicy")
# the kinds this version reads (and so can leave out)
READ_KINDS = (NP, ANP, BANP, CNP, *CILIUM)
ALL_PROTOCOLS = ("TCP", "UDP", "SCTP")
NOT_DOCUMENTED = "not documented"


@dataclass(frozen=True)
class Profile:
    name: str
    title: str
    # the policy kinds whose rules decide verdicts
    enforces: tuple[str, ...]
    # the protocols whose traffic policies filter (others pass, whatever a policy says)
    protocols: tuple[str, ...] = ALL_PROTOCOLS
    # ipBlock / CIDR rules match the addresses of pods and nodes of the cluster too
    cidr_matches_cluster: bool = True
    # ingress from a pod's own node (kubelet probes) is always allowed; from other nodes
    # it is subject to policy like any peer
    own_node_allowed: bool = True
    # CIDR rules that match outside addresses only match the cluster's nodes too
    cidr_matches_nodes: bool = False
    # every pod is isolated in both directions, whether or not a policy selects it
    isolates_every_pod: bool = False
    # which source a NodePort's backend sees with externalTrafficPolicy: Cluster
    nodeport_source: str = "the node (source NAT)"
    # what must be true of the cluster for the profile to hold
    requires: str | None = None
    # what to do when it enforces nothing
    advice: str | None = None
    # entry -> the CNI's documentation or source that says so, or NOT_DOCUMENTED
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def enforces_nothing(self) -> bool:
        return not self.enforces


K8S_DOCS = "https://kubernetes.io/docs/concepts/services-networking/network-policies/"
SOURCE_IP = "https://kubernetes.io/docs/tutorials/services/source-ip/"
CILIUM_L3 = "https://docs.cilium.io/en/stable/security/policy/layer3/"
AZURE = "https://learn.microsoft.com/en-us/azure/aks/azure-cni-powered-by-cilium"

PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("kubernetes", "the Kubernetes API's semantics", READ_KINDS, sources={
        "enforces": K8S_DOCS,
        "protocols": K8S_DOCS,
        "cidr_matches_cluster": "https://github.com/kubernetes/kubernetes/blob/master/test/"
                                "e2e/network/netpol/network_policy.go",
        "own_node_allowed": K8S_DOCS,
        "nodeport_source": SOURCE_IP,
    }),
    Profile("calico", "Calico", (NP, ANP, BANP, CNP, *CALICO), sources={
        "enforces": "https://docs.tigera.io/calico/latest/network-policy/policy-tiers/"
                    "tiered-policy (AdminNetworkPolicy and BaselineAdminNetworkPolicy in "
                    "v3.29-v3.31, ClusterNetworkPolicy from v3.32: "
                    "https://github.com/projectcalico/calico/issues/10745)",
        "protocols": "https://docs.tigera.io/calico/latest/reference/resources/networkpolicy "
                     "(iptables dataplane; the eBPF dataplane filters no SCTP: "
                     "https://docs.tigera.io/calico/latest/operations/ebpf/enabling-ebpf)",
        "cidr_matches_cluster": "https://github.com/projectcalico/calico/blob/master/"
                                "libcalico-go/lib/backend/k8s/conversion/conversion.go",
        "own_node_allowed": "not documented (Felix's iptables rules return host traffic to "
                            "local workloads before policy: https://github.com/projectcalico/"
                            "calico/blob/master/felix/rules/static_test.go)",
        "nodeport_source": SOURCE_IP + " (kube-proxy; the eBPF dataplane keeps the client)",
    }),
    Profile("cilium", "Cilium", (NP, *CILIUM), cidr_matches_cluster=False,
            nodeport_source="the node (SNAT mode, the default); the client in DSR mode",
            sources={
        "enforces": "https://docs.cilium.io/en/stable/network/kubernetes/policy/ "
                    "(AdminNetworkPolicy not implemented: https://github.com/cilium/cilium/"
                    "issues/23380; ClusterNetworkPolicy only from 1.20 behind a flag)",
        "protocols": "https://docs.cilium.io/en/stable/configuration/sctp/ (SCTP: beta, "
                     "with sctp.enabled)",
        "cidr_matches_cluster": CILIUM_L3,
        "own_node_allowed": CILIUM_L3 + " (--allow-localhost, default auto)",
        "nodeport_source": "https://docs.cilium.io/en/stable/network/kubernetes/"
                           "kubeproxy-free/",
    }),
    Profile("antrea", "Antrea", (NP, ANP, BANP, *ANTREA), sources={
        "enforces": "https://antrea.io/docs/main/docs/admin-network-policy/ (from v1.13; "
                    "ClusterNetworkPolicy v1alpha2 is alpha behind a feature gate)",
        "protocols": "https://github.com/antrea-io/antrea/issues/1297",
        "cidr_matches_cluster": "https://github.com/antrea-io/antrea/blob/main/test/e2e/"
                                "networkpolicy_test.go (pods; nodes: not documented)",
        "own_node_allowed": "https://github.com/antrea-io/antrea/pull/1816",
        "nodeport_source": "https://github.com/antrea-io/antrea/releases/tag/v0.12.2",
    }),
    Profile("flannel", "Flannel", (),
            advice="flannel enforces no network policy: a policy-enforcing CNI is needed "
                   "(Calico, or Calico with flannel as Canal; flannel's optional "
                   "kube-network-policies add-on since v0.25.5)",
            sources={
        "enforces": "https://github.com/flannel-io/flannel/blob/master/README.md",
        "protocols": "not applicable (no enforcement)",
        "cidr_matches_cluster": "not applicable (no enforcement)",
        "own_node_allowed": "not applicable (no enforcement)",
        "nodeport_source": SOURCE_IP + " (kube-proxy)",
    }),
    Profile("aws-vpc-cni", "the Amazon VPC CNI with its network policy agent", (NP,),
            requires="the VPC CNI's network policy agent enabled (enable-network-policy, "
                     "VPC CNI 1.14 or later; off by default)",
            sources={
        "enforces": "https://docs.aws.amazon.com/eks/latest/userguide/cni-network-policy.html"
                    " (the upstream AdminNetworkPolicy kinds: not documented)",
        "protocols": "not documented (the agent's eBPF programs match SCTP ports: "
                     "https://github.com/aws/aws-network-policy-agent/blob/main/pkg/ebpf/c/"
                     "tc.v4ingress.bpf.c)",
        "cidr_matches_cluster": "not documented (the agent matches addresses only: "
                                "https://github.com/aws/aws-network-policy-agent/blob/main/"
                                "pkg/ebpf/c/tc.v4ingress.bpf.c)",
        "own_node_allowed": "https://github.com/aws/aws-network-policy-agent/pull/65",
        "nodeport_source": SOURCE_IP + " (kube-proxy)",
    }),
    Profile("ovn-kubernetes", "OVN-Kubernetes", (NP, ANP, BANP), sources={
        "enforces": "https://github.com/ovn-org/ovn-kubernetes/blob/master/docs/features/"
                    "network-security-controls/admin-network-policy.md (ClusterNetworkPolicy"
                    ": not documented)",
        "protocols": "https://github.com/ovn-org/ovn-kubernetes/blob/master/docs/features/"
                     "network-security-controls/admin-network-policy.md",
        "cidr_matches_cluster": "https://github.com/ovn-org/ovn-kubernetes/blob/master/docs/"
                                "features/network-security-controls/network-policy.md",
        "own_node_allowed": "https://github.com/ovn-org/ovn-kubernetes/blob/master/docs/"
                            "design/acls.md",
        "nodeport_source": "https://github.com/ovn-org/ovn-kubernetes/blob/master/docs/"
                           "design/service-traffic-policy.md",
    }),
    Profile("azure", "Azure CNI powered by Cilium", (NP, *CILIUM),
            cidr_matches_cluster=False, sources={
        "enforces": AZURE + " (L3/L4 CiliumNetworkPolicy and CiliumClusterwideNetwork"
                            "Policy; the AdminNetworkPolicy kinds: not documented)",
        "protocols": "not documented",
        "cidr_matches_cluster": AZURE,
        "own_node_allowed": "not documented",
        "nodeport_source": "not documented",
    }),
    Profile("gke-dataplane-v2", "GKE Dataplane V2", (NP, "CiliumClusterwideNetworkPolicy"),
            sources={
        "enforces": "https://cloud.google.com/kubernetes-engine/docs/how-to/"
                    "configure-cilium-network-policy (namespaced CiliumNetworkPolicy and the "
                    "AdminNetworkPolicy kinds: not documented)",
        "protocols": "not documented (SCTP only on Ubuntu nodes: https://cloud.google.com/"
                     "kubernetes-engine/docs/how-to/deploy-workloads-with-sctp)",
        "cidr_matches_cluster": "not documented",
        "own_node_allowed": "not documented",
        "nodeport_source": "https://cloud.google.com/kubernetes-engine/docs/concepts/"
                           "service-load-balancer (implied: Local keeps the client)",
    }),
)}


NAMES = tuple(PROFILES)


def profile(name: str) -> Profile:
    return PROFILES[name]


# flow formats that reveal the dataplane that recorded them
INFERRED_FROM = {"hubble": "cilium", "calico": "calico", "antrea": "antrea"}


# a snapshot object that only a cluster running that CNI holds
CILIUM_CONFIG_SOURCE = "the snapshot's kube-system/cilium-config ConfigMap"


def infer(formats: Sequence[str], cilium_config: bool = False) -> tuple[str, str | None]:
    """(profile name, what it was inferred from, or None when not inferred): the flows'
    format when it reveals the dataplane, else the snapshot's Cilium agent configuration."""
    found = {INFERRED_FROM[f] for f in formats if f in INFERRED_FROM}
    if len(found) == 1:
        name = found.pop()
        source = next(f for f in formats if INFERRED_FROM.get(f) == name)
        return name, f"{source} flows"
    if not found and cilium_config:
        return "cilium", CILIUM_CONFIG_SOURCE
    return "kubernetes", None


def split_enforced(policies: list[Any], prof: Profile) -> tuple[list[Any], dict[str, int]]:
    """The policies the profile enforces, and per kind how many it does not (a profile
    that enforces nothing keeps them all: the API's verdict is shown beside the wire's)."""
    kept: list[Any] = []
    dropped: dict[str, int] = {}
    for p in policies:
        if prof.enforces_nothing or p.kind in prof.enforces:
            kept.append(p)
        else:
            dropped[p.kind] = dropped.get(p.kind, 0) + 1
    return kept, dropped


# how isolation by the agent's enable-policy: always is named where policies are (the
# evaluation's SQL spells it too)
AGENT_REF = "cilium-config"
# the profiles whose policies a Cilium agent enforces (its configuration applies to them)
CILIUM_AGENT = ("cilium", "azure")


def agent_config(prof: Profile, config: dict[str, str] | None
                 ) -> tuple[Profile, list[str]]:
    """The profile as the snapshot's Cilium agent configuration (kube-system/cilium-config)
    changes it, and each setting that did, in words. Only settings that differ from the
    agent's defaults change anything."""
    if prof.name not in CILIUM_AGENT or not config:
        return prof, []
    said: list[str] = []
    mode = config.get("enable-policy", "").strip().lower()
    if mode == "never":
        prof = replace(prof, enforces=(), advice="the snapshot's cilium-config sets "
                       "enable-policy: never, so the Cilium agent enforces no policy")
        said.append("enable-policy: never (no policy is enforced)")
    elif mode == "always":
        prof = replace(prof, isolates_every_pod=True)
        said.append("enable-policy: always (every pod is isolated, policy or not)")
    if config.get("allow-localhost", "").strip().lower() == "policy":
        prof = replace(prof, own_node_allowed=False)
        said.append("allow-localhost: policy (a pod's own node is policed like any peer)")
    modes = config.get("policy-cidr-match-mode", "").replace(",", " ").lower().split()
    if "nodes" in modes:
        prof = replace(prof, cidr_matches_nodes=True)
        said.append("policy-cidr-match-mode: nodes (CIDR rules select the cluster's nodes)")
    return prof, said


def configure(con: duckdb.DuckDBPyConnection, prof: Profile) -> None:
    """What every evaluation on this connection (the run's and the fix replays') takes
    from the profile (evaluate.py reads them): whether CIDR rules match outside addresses
    only, and whether ingress from a pod's own node is always allowed."""
    from . import db

    # a table, not session variables: the evaluation runs on cursors of its own
    db.run(con, f"""CREATE OR REPLACE TABLE dataplane AS
        SELECT {str(not prof.cidr_matches_cluster).lower()} AS cidr_world_only,
               {str(prof.own_node_allowed).lower()} AS own_node_allowed,
               {str(prof.cidr_matches_nodes).lower()} AS cidr_nodes,
               {str(prof.isolates_every_pod).lower()} AS isolate_all""")


# What the wire does where the profile does not filter: the API's verdict kept in words.
UNENFORCED_SQL = """
CREATE OR REPLACE TABLE pair_verdict_api AS SELECT * FROM pair_verdict;

CREATE OR REPLACE VIEW pair_verdict AS
WITH k AS (SELECT key_id, proto FROM dir_key WHERE direction = 'egress')
SELECT v.* REPLACE (
    CASE WHEN u.why IS NULL THEN v.verdict ELSE 'allow' END AS verdict,
    CASE WHEN u.why IS NULL THEN v.reason
         ELSE u.why || '; the API''s verdict would be ' || v.verdict || ': ' || v.reason
    END AS reason,
    CASE WHEN u.why IS NULL THEN v.tier ELSE 'default' END AS tier,
    CASE WHEN u.why IS NULL THEN v.egress ELSE 'allow' END AS egress,
    CASE WHEN u.why IS NULL THEN v.ingress ELSE 'allow' END AS ingress,
    CASE WHEN u.why IS NULL THEN v.undecided END AS undecided,
    CASE WHEN u.why IS NULL THEN v.egress_tier ELSE 'default' END AS egress_tier,
    CASE WHEN u.why IS NULL THEN v.ingress_tier ELSE 'default' END AS ingress_tier,
    CASE WHEN u.why IS NULL THEN v.egress_decided_by ELSE [] END AS egress_decided_by,
    CASE WHEN u.why IS NULL THEN v.ingress_decided_by ELSE [] END AS ingress_decided_by)
FROM pair_verdict_api v
LEFT JOIN k ON k.key_id = v.ekey
LEFT JOIN (SELECT * FROM (VALUES __UNENFORCED__) t(proto, why)) u
    ON u.proto = -1 OR u.proto = k.proto
"""


def apply_enforcement(con: duckdb.DuckDBPyConnection, prof: Profile) -> None:
    """After the evaluation: traffic the CNI does not filter is allowed on the wire."""
    from . import db
    from .protocols import PROTOCOL_NUMBERS

    rows = []
    if prof.enforces_nothing:
        rows.append((-1, f"not enforced by {prof.name} (it enforces no network policy)"))
    else:
        rows += [(PROTOCOL_NUMBERS[p], f"not enforced by {prof.name} (its policies do not "
                                       f"filter {p})")
                 for p in ALL_PROTOCOLS if p not in prof.protocols]
    if not rows:
        return
    values = ", ".join(f"({n}, '{why}')" for n, why in rows)
    for statement in UNENFORCED_SQL.replace("__UNENFORCED__", values).split(";\n\n"):
        db.run(con, statement)


def describe(prof: Profile, inferred_from: str | None,
             agent: Sequence[str] = ()) -> dict[str, Any]:
    """The profile as the summary (and every output) states it; agent: the Cilium agent
    settings that changed it (agent_config)."""
    return {"cni": prof.name, "title": prof.title, "inferred": inferred_from is not None,
            "inferred_from": inferred_from, "enforces": list(prof.enforces),
            "enforces_policy": not prof.enforces_nothing,
            "cidr_matches_cluster": prof.cidr_matches_cluster,
            "requires": prof.requires, "advice": prof.advice,
            "agent_config": list(agent)}


_ENTRIES = {"enforces": "enforces", "protocols": "protocols",
            "cidr_matches_cluster": "CIDR rules and cluster endpoints",
            "own_node_allowed": "own node", "nodeport_source": "NodePort source"}


def profiles_table() -> str:
    """docs/cni-profiles.md's table and sources, made from the profiles (a test keeps the
    page equal to it)."""
    lines = ["| profile | enforces | protocols | CIDR rules match cluster endpoints | "
             "own node always allowed | NodePort source (Cluster) | requires |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for p in PROFILES.values():
        lines.append(f"| `{p.name}` | {', '.join(p.enforces) or 'nothing'} | "
                     f"{', '.join(p.protocols)} | "
                     f"{'yes' if p.cidr_matches_cluster else 'no'} | "
                     f"{'yes' if p.own_node_allowed else 'no'} | {p.nodeport_source} | "
                     f"{p.requires or '-'} |")
    lines += ["", "## Sources", ""]
    for p in PROFILES.values():
        lines += [f"### `{p.name}`: {p.title}", ""]
        if p.advice:
            lines += [f"{p.advice[0].upper()}{p.advice[1:]}.", ""]
        lines += [f"- {label}: {p.sources[k]}" for k, label in _ENTRIES.items()]
        lines.append("")
    return "\n".join(lines)
