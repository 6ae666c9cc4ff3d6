"""The endpoint catalog: who held which IP when (pods, nodes, services), pod identities
(namespace + label set, the unit selectors are evaluated on), namespace labels and
declared container ports, as DuckDB tables."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from . import db
from .cluster import NS_NAME_LABEL, TERMINAL_PHASES, Cluster
from .ipnet import parse_cidr
from .policy.cilium_v2 import (
    CLUSTER_LABEL,
    DERIVED_PREFIX,
    NS_LABEL,
    NS_LABELS_PREFIX,
    SA_LABEL,
)
from .protocols import PROTOCOL_NUMBERS

NEVER = 1e18  # "no creation/deletion time": held for all time

# Which holder wins when several held an address at once.
PRIO_POD, PRIO_FINISHED_POD, PRIO_NODE, PRIO_SERVICE = 0, 1, 2, 3


@dataclass
class Identities:
    """Interns (namespace, labels, service account) into identity ids; collects namespace
    labels. The service account is part of an identity as Cilium sees it (None: not
    known, where a flow names a pod the snapshot does not hold)."""

    ids: dict[tuple[str, frozenset[tuple[str, str]], str | None], int] = field(
        default_factory=dict)
    ns_labels: dict[str, dict[str, str]] = field(default_factory=dict)

    def intern(self, namespace: str, labels: dict[str, str],
               service_account: str | None = None) -> int:
        self.ns_labels.setdefault(namespace, {NS_NAME_LABEL: namespace})
        return self.ids.setdefault((namespace, frozenset(labels.items()), service_account),
                                   len(self.ids))

    def add_namespace(self, namespace: str, labels: dict[str, str], *, override: bool) -> None:
        current = self.ns_labels.setdefault(namespace, {})
        for k, v in labels.items():
            if override or k not in current:
                current[k] = v
        current[NS_NAME_LABEL] = namespace


def _table(con: duckdb.DuckDBPyConnection, name: str, data: dict[str, list[Any]],
           types: dict[str, pa.DataType]) -> None:
    arrow = pa.table({k: pa.array(v, type=types[k]) for k, v in data.items()})
    con.register(f"{name}_arrow", arrow)
    db.run(con, f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {name}_arrow")
    con.unregister(f"{name}_arrow")


S, INT, D = pa.string(), pa.int32(), pa.float64()


def register_cluster(con: duckdb.DuckDBPyConnection, cluster: Cluster,
                     extra_pod_cidrs: list[str], idents: Identities) -> None:
    for ns, labels in cluster.namespaces.items():
        idents.add_namespace(ns, labels, override=True)
    h: dict[str, list[Any]] = {k: [] for k in (
        "ip", "kind", "ep_name", "namespace", "pod", "workload", "node", "pod_ref",
        "ident_id", "created", "deleted", "prio")}

    def holder(ip: str, kind: str, ep_name: str, ns: str | None, pod: str | None,
               workload: str | None, node: str | None, ident: int | None,
               created: float | None, deleted: float | None, prio: int) -> None:
        for k, v in zip(h, (ip, kind, ep_name, ns, pod, workload, node,
                            f"{ns}/{pod}" if pod else None, ident,
                            -NEVER if created is None else created,
                            NEVER if deleted is None else deleted, prio), strict=True):
            h[k].append(v)

    ports: dict[str, list[Any]] = {"pod_ref": [], "proto": [], "port": [], "name": []}
    # host-network pods by the ports they serve on their node: what names a node's
    # connection to such a port in reports
    hostnet: dict[str, list[Any]] = {"node": [], "proto": [], "port": [], "namespace": [],
                                     "pod": [], "workload": []}
    for p in cluster.pods:
        if p.host_network:
            # Shares its node's address and is not subject to NetworkPolicy: a node.
            for ip in p.ips:
                holder(ip, "node", f"node/{p.node}", None, None, f"Node/{p.node}", p.node,
                       None, None, None, PRIO_NODE)
            for cp in p.ports:
                for k, v in zip(hostnet, (p.node, PROTOCOL_NUMBERS.get(cp.protocol), cp.port,
                                          p.namespace, p.name, p.workload), strict=True):
                    hostnet[k].append(v)
            continue
        ident = idents.intern(p.namespace, p.labels, p.service_account)
        prio = PRIO_FINISHED_POD if p.phase in TERMINAL_PHASES else PRIO_POD
        for ip in p.ips:
            holder(ip, "pod", f"{p.namespace}/{p.name}", p.namespace, p.name, p.workload,
                   p.node, ident, p.created, p.deleted, prio)
        for cp in p.ports:
            ports["pod_ref"].append(f"{p.namespace}/{p.name}")
            ports["proto"].append(PROTOCOL_NUMBERS.get(cp.protocol))
            ports["port"].append(cp.port)
            ports["name"].append(cp.name)
    for n in cluster.nodes:
        for ip in n.ips:
            holder(ip, "node", f"node/{n.name}", None, None, f"Node/{n.name}", n.name, None,
                   None, None, PRIO_NODE)
    for s in cluster.services:
        # load-balancer and external IPs lead to the Service too (below a node or pod
        # that holds the same address: an externalIP is often a node's own)
        for ip in dict.fromkeys(s.cluster_ips + s.lb_ips + s.external_ips):
            holder(ip, "service", f"svc/{s.namespace}/{s.name}", s.namespace, None,
                   f"Service/{s.name}", None, None, None, None, PRIO_SERVICE)
    _table(con, "holder", h, {"ip": S, "kind": S, "ep_name": S, "namespace": S, "pod": S,
                              "workload": S, "node": S, "pod_ref": S, "ident_id": INT,
                              "created": D, "deleted": D, "prio": INT})
    db.run(con, "CREATE OR REPLACE TABLE holder AS "
                "SELECT row_number() OVER () AS holder_id, * FROM holder")
    _table(con, "pod_port", ports, {"pod_ref": S, "proto": INT, "port": INT, "name": S})
    _table(con, "hostnet_port", hostnet, {"node": S, "proto": INT, "port": INT,
                                          "namespace": S, "pod": S, "workload": S})
    _register_services(con, cluster)
    # nodes by their label sets (node peers of the cluster-scoped policies select them)
    node_idents: dict[frozenset[tuple[str, str]], int] = {}
    nodes: dict[str, list[Any]] = {"node": [], "nident": []}
    nl: dict[str, list[Any]] = {"nident": [], "key": [], "value": []}
    for n in cluster.nodes:
        labels = frozenset(n.labels.items())
        if labels not in node_idents:
            node_idents[labels] = len(node_idents)
            for k, v in sorted(labels):
                for col, val in zip(nl, (node_idents[labels], k, v), strict=True):
                    nl[col].append(val)
        nodes["node"].append(n.name)
        nodes["nident"].append(node_idents[labels])
    _table(con, "node_ident", nodes, {"node": S, "nident": INT})
    _table(con, "node_label", nl, {"nident": INT, "key": S, "value": S})
    _table(con, "nident", {"nident": list(node_idents.values())}, {"nident": INT})
    # the API server's addresses (Cilium's kube-apiserver entity)
    _table(con, "apiserver_ip", {"ip": cluster.service_endpoints("default", "kubernetes")},
           {"ip": S})
    cidrs = [parse_cidr(c) for c in cluster.pod_cidrs + list(extra_pod_cidrs)]
    _table(con, "pod_cidr", {"family": [c.family for c in cidrs], "lo": [c.lo for c in cidrs],
                             "hi": [c.hi for c in cidrs]}, {"family": INT, "lo": S, "hi": S})


def _register_services(con: duckdb.DuckDBPyConnection, cluster: Cluster) -> None:
    """What following a Service takes (backends.py): svc_addr (the addresses that lead to
    a Service: its ClusterIPs, load-balancer and external IPs), svc_port (its ports, node
    ports and target ports), svc_backend (per Service port, each endpoint and the port it
    serves on) and pod_ready (since when each pod was Ready)."""
    addr: dict[str, list[Any]] = {"ip": [], "svc": [], "via": [], "local": []}
    port: dict[str, list[Any]] = {k: [] for k in (
        "svc", "port_name", "proto", "port", "node_port", "local")}
    for s in cluster.services:
        ref = f"{s.namespace}/{s.name}"
        for via, ips in (("ClusterIP", s.cluster_ips), ("LoadBalancer", s.lb_ips),
                         ("externalIP", s.external_ips)):
            for ip in ips:
                for k, v in zip(addr, (ip, ref, via, s.local_traffic), strict=True):
                    addr[k].append(v)
        for sp in s.ports:
            for k, v in zip(port, (ref, sp.name, PROTOCOL_NUMBERS.get(sp.protocol), sp.port,
                                   sp.node_port, s.local_traffic), strict=True):
                port[k].append(v)
    back: dict[str, list[Any]] = {k: [] for k in (
        "svc", "port_name", "proto", "port", "ip", "ready", "pod_ref")}
    for b in cluster.service_backends():
        for k, v in zip(back, (f"{b.namespace}/{b.service}", b.port_name,
                               PROTOCOL_NUMBERS.get(b.protocol), b.port, b.ip, b.ready,
                               f"{b.namespace}/{b.pod}" if b.pod else None), strict=True):
            back[k].append(v)
    ready: dict[str, list[Any]] = {"pod_ref": [], "ready_since": []}
    for p in cluster.pods:
        if p.ready_since is not None:
            ready["pod_ref"].append(f"{p.namespace}/{p.name}")
            ready["ready_since"].append(p.ready_since)
    B = pa.bool_()
    _table(con, "svc_addr", addr, {"ip": S, "svc": S, "via": S, "local": B})
    _table(con, "svc_port", port, {"svc": S, "port_name": S, "proto": INT, "port": INT,
                                   "node_port": INT, "local": B})
    _table(con, "svc_backend", back, {"svc": S, "port_name": S, "proto": INT, "port": INT,
                                      "ip": S, "ready": B, "pod_ref": S})
    _table(con, "pod_ready", ready, {"pod_ref": S, "ready_since": D})


def _labels(text: str | None) -> dict[str, str] | None:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    return {str(k): str(v) for k, v in value.items()}


def register_flow_pods(con: duckdb.DuckDBPyConnection, idents: Identities) -> int:
    """Identities of pods named by the flows themselves (Hubble-like sources). Returns how
    many distinct pods had label text that is not a JSON object (their records are
    skipped as 'invalid labels')."""
    rows = con.execute("""
        SELECT DISTINCT namespace, pod, labels, ns_labels FROM (
            SELECT src_namespace AS namespace, src_pod AS pod, src_labels AS labels,
                   src_namespace_labels AS ns_labels FROM tuples
            WHERE src_pod IS NOT NULL OR lower(src_kind) = 'pod'
            UNION ALL
            SELECT dst_namespace, dst_pod, dst_labels, dst_namespace_labels
            FROM tuples WHERE dst_pod IS NOT NULL OR lower(dst_kind) = 'pod')""").fetchall()
    data: dict[str, list[Any]] = {"namespace": [], "pod": [], "labels": [], "ident_id": []}
    bad = 0
    for ns, pod, labels_text, ns_text in rows:
        ns = ns or "default"
        labels, ns_labels = _labels(labels_text), _labels(ns_text)
        if labels is None or ns_labels is None:
            bad += 1
            ident = None
        else:
            idents.add_namespace(ns, ns_labels, override=False)
            # Hubble's identity labels name the service account (hubble.py keeps it)
            sa = labels.pop(DERIVED_PREFIX + SA_LABEL, None)
            ident = idents.intern(ns, labels, sa)
        for k, v in zip(data, (ns, pod, labels_text, ident), strict=True):
            data[k].append(v)
    _table(con, "flow_pod", data, {"namespace": S, "pod": S, "labels": S, "ident_id": INT})
    return bad


def register_identities(con: duckdb.DuckDBPyConnection, idents: Identities,
                        cluster_name: str = "default") -> None:
    """ident and ident_label (a pod's own labels, what reports and fixes name), ns and
    ns_label; and sel_label: what selectors match on, the pod's labels plus the identity
    labels Cilium gives every pod (in their own key space, see cilium_v2.DERIVED_PREFIX):
    its namespace, its namespace's labels, its service account and the cluster's name."""
    ident: dict[str, list[Any]] = {"ident_id": [], "namespace": []}
    il: dict[str, list[Any]] = {"ident_id": [], "key": [], "value": []}
    sl: dict[str, list[Any]] = {"ident_id": [], "key": [], "value": []}

    def add(rows: dict[str, list[Any]], i: int, k: str, v: str) -> None:
        rows["ident_id"].append(i)
        rows["key"].append(k)
        rows["value"].append(v)

    for (ns, labels, sa), i in idents.ids.items():
        ident["ident_id"].append(i)
        ident["namespace"].append(ns)
        for k, v in labels:
            add(il, i, k, v)
            add(sl, i, k, v)
        derived = {NS_LABEL: ns, CLUSTER_LABEL: cluster_name}
        derived.update({NS_LABELS_PREFIX + k: v
                        for k, v in idents.ns_labels.get(ns, {}).items()})
        if sa is not None:
            derived[SA_LABEL] = sa
        for k, v in derived.items():
            add(sl, i, DERIVED_PREFIX + k, v)
    nl: dict[str, list[Any]] = {"namespace": [], "key": [], "value": []}
    for ns, labels in idents.ns_labels.items():
        for k, v in labels.items():
            nl["namespace"].append(ns)
            nl["key"].append(k)
            nl["value"].append(v)
    _table(con, "ident", ident, {"ident_id": INT, "namespace": S})
    _table(con, "ident_label", il, {"ident_id": INT, "key": S, "value": S})
    _table(con, "sel_label", sl, {"ident_id": INT, "key": S, "value": S})
    _table(con, "ns", {"namespace": list(idents.ns_labels)}, {"namespace": S})
    _table(con, "ns_label", nl, {"namespace": S, "key": S, "value": S})
