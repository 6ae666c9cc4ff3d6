"""Write test worlds to disk in the real input formats `simulate` reads.

Tests build clusters, policies and flows as plain Python data and use these helpers to
turn them into kubectl JSON, policy YAML and AWS VPC flow-log Parquet, so every test
drives the same parsers a user's files go through.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

PROTO_NUMBERS = {"TCP": 6, "UDP": 17, "SCTP": 132, "ICMP": 1, "ICMPv6": 58}

# Column types of AWS's Parquet delivery (FORMATS.md, "Delivery, incl. Parquet").
VPC_PARQUET_SCHEMA = pa.schema(
    [
        ("version", pa.int32()),
        ("account_id", pa.string()),
        ("interface_id", pa.string()),
        ("srcaddr", pa.string()),
        ("dstaddr", pa.string()),
        ("srcport", pa.int32()),
        ("dstport", pa.int32()),
        ("protocol", pa.int32()),
        ("packets", pa.int64()),
        ("bytes", pa.int64()),
        ("start", pa.int64()),
        ("end", pa.int64()),
        ("action", pa.string()),
        ("log_status", pa.string()),
    ]
)


def namespace(name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": dict(labels or {})},
    }


def pod(
    ns: str,
    name: str,
    ip: str | Sequence[str],
    labels: Mapping[str, str] | None = None,
    ports: Iterable[tuple[str | None, int, str]] = (),
    *,
    node: str = "node-1",
    host_network: bool = False,
    created: str = "2024-01-01T00:00:00Z",
    deleted: str | None = None,
    owner: tuple[str, str] | None = None,
    phase: str = "Running",
    service_account: str | None = None,
) -> dict[str, Any]:
    """A Pod as `kubectl get pod -o json` prints it. ports: (name|None, number, protocol)."""
    ips = [ip] if isinstance(ip, str) else list(ip)
    container_ports = []
    for pname, number, proto in ports:
        entry: dict[str, Any] = {"containerPort": number, "protocol": proto}
        if pname:
            entry["name"] = pname
        container_ports.append(entry)
    meta: dict[str, Any] = {
        "name": name,
        "namespace": ns,
        "labels": dict(labels or {}),
        "creationTimestamp": created,
    }
    if deleted:
        meta["deletionTimestamp"] = deleted
    if owner:
        meta["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1], "controller": True}
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "nodeName": node,
            "hostNetwork": host_network,
            "containers": [{"name": "main", "image": "agnhost", "ports": container_ports}],
            **({"serviceAccountName": service_account} if service_account else {}),
        },
        "status": {
            "phase": phase,
            "podIP": ips[0] if ips else None,
            "podIPs": [{"ip": i} for i in ips],
        },
    }


def node(name: str, ip: str, pod_cidrs: Sequence[str] = (),
         labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name,
                     "labels": dict(labels) if labels else {"kubernetes.io/hostname": name}},
        "spec": {"podCIDR": pod_cidrs[0] if pod_cidrs else None, "podCIDRs": list(pod_cidrs)},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
    }


def service(ns: str, name: str, cluster_ip: str, selector: Mapping[str, str] | None,
            labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                            "ports": [{"port": 80, "protocol": "TCP"}]}
    if selector is not None:
        spec["selector"] = dict(selector)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "labels": dict(labels or {})},
            "spec": spec}


def endpoint_slice(ns: str, service_name: str, addresses: Sequence[str]) -> dict[str, Any]:
    """An EndpointSlice of a Service (discovery.k8s.io/v1), one endpoint per address."""
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service_name}-abcde", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv6" if ":" in addresses[0] else "IPv4",
            "endpoints": [{"addresses": [a], "conditions": {"ready": True}}
                          for a in addresses],
            "ports": [{"port": 6443, "protocol": "TCP", "name": "https"}]}


def config_map(ns: str, name: str, data: Mapping[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns}, "data": dict(data)}


def cilium_policy(name: str, spec: Mapping[str, Any] | None = None, *,
                  ns: str | None = None, specs: Sequence[Mapping[str, Any]] | None = None
                  ) -> dict[str, Any]:
    """A CiliumNetworkPolicy in `ns`, or (ns None) a CiliumClusterwideNetworkPolicy."""
    meta: dict[str, Any] = {"name": name}
    if ns is not None:
        meta["namespace"] = ns
    doc: dict[str, Any] = {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy" if ns is not None else "CiliumClusterwideNetworkPolicy",
        "metadata": meta}
    if spec is not None:
        doc["spec"] = dict(spec)
    if specs is not None:
        doc["specs"] = [dict(s) for s in specs]
    return doc


def write_cluster(path: Path, objects: Iterable[Mapping[str, Any]]) -> Path:
    """Write objects as the `kind: List` that `kubectl get ... -o json` prints."""
    doc = {"apiVersion": "v1", "kind": "List", "items": list(objects), "metadata": {}}
    path.write_text(json.dumps(doc, indent=1))
    return path


def write_policies(directory: Path, policies: Iterable[Mapping[str, Any]]) -> Path:
    """Write each policy to its own YAML file below `directory`; no policy at all is a
    manifest file holding an empty list (as `kubectl get networkpolicies -A -o yaml`
    prints it), since a directory without any manifest is refused as a likely wrong path."""
    directory.mkdir(parents=True, exist_ok=True)
    written = 0
    for i, pol in enumerate(policies):
        meta = pol.get("metadata", {})
        name = f"{i:04d}-{meta.get('namespace', 'default')}-{meta.get('name', 'policy')}.yaml"
        (directory / name).write_text(yaml.safe_dump(dict(pol), sort_keys=False))
        written += 1
    if not written and not any(directory.glob("*.yaml")):
        (directory / "none.yaml").write_text("apiVersion: v1\nkind: List\nitems: []\n")
    return directory


def cluster_policy(kind: str, name: str, spec: Mapping[str, Any],
                   version: str | None = None) -> dict[str, Any]:
    """An AdminNetworkPolicy, BaselineAdminNetworkPolicy (v1alpha1) or
    ClusterNetworkPolicy (v1alpha2 unless `version` says otherwise)."""
    if version is None:
        version = "v1alpha2" if kind == "ClusterNetworkPolicy" else "v1alpha1"
    return {"apiVersion": f"policy.networking.k8s.io/{version}", "kind": kind,
            "metadata": {"name": name}, "spec": dict(spec)}


def netpol(
    ns: str, name: str, spec: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": dict(spec),
    }


def vpc_record(
    src: str,
    dst: str,
    dst_port: int,
    protocol: str | int = "TCP",
    *,
    src_port: int = 40000,
    start: int = 1_717_000_000,
    end: int | None = None,
    packets: int = 1,
    nbytes: int = 60,
    action: str = "ACCEPT",
    log_status: str = "OK",
) -> dict[str, Any]:
    proto = PROTO_NUMBERS[protocol] if isinstance(protocol, str) else protocol
    return {
        "version": 2,
        "account_id": "123456789012",
        "interface_id": "eni-0123456789abcdef0",
        "srcaddr": src,
        "dstaddr": dst,
        "srcport": src_port,
        "dstport": dst_port,
        "protocol": proto,
        "packets": packets,
        "bytes": nbytes,
        "start": start,
        "end": end if end is not None else start + 10,
        "action": action,
        "log_status": log_status,
    }


def write_vpc_parquet(path: Path, records: Iterable[Mapping[str, Any]]) -> Path:
    rows = list(records)
    table = pa.Table.from_pylist(rows, schema=VPC_PARQUET_SCHEMA)
    pq.write_table(table, path)
    return path


def service_of(ns: str, name: str, ports: Sequence[Mapping[str, Any]], *,
               cluster_ip: str | None = None, selector: Mapping[str, str] | None = None,
               type: str = "ClusterIP", lb_ips: Sequence[str] = (),
               external_ips: Sequence[str] = (),
               traffic_policy: str | None = None) -> dict[str, Any]:
    """A Service as `kubectl get svc -o json` prints it; ports as in spec.ports."""
    spec: dict[str, Any] = {"type": type, "ports": [dict(p) for p in ports]}
    if cluster_ip:
        spec["clusterIP"], spec["clusterIPs"] = cluster_ip, [cluster_ip]
    if selector is not None:
        spec["selector"] = dict(selector)
    if external_ips:
        spec["externalIPs"] = list(external_ips)
    if traffic_policy:
        spec["externalTrafficPolicy"] = traffic_policy
    status = {"loadBalancer": {"ingress": [{"ip": ip} for ip in lb_ips]} if lb_ips else {}}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns}, "spec": spec, "status": status}


def slice_of(ns: str, service_name: str, suffix: str,
             endpoints: Sequence[tuple[str, str | None, bool | None]],
             ports: Sequence[tuple[str, int, str]]) -> dict[str, Any]:
    """An EndpointSlice: endpoints (address, pod name or None, ready or None), ports
    (name, port, protocol)."""
    eps = []
    for addr, pod_name, ready in endpoints:
        ep: dict[str, Any] = {"addresses": [addr], "conditions": {}}
        if ready is not None:
            ep["conditions"]["ready"] = ready
        if pod_name:
            ep["targetRef"] = {"kind": "Pod", "name": pod_name, "namespace": ns}
        eps.append(ep)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service_name}-{suffix}", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv6" if ":" in endpoints[0][0] else "IPv4",
            "endpoints": eps,
            "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]}
