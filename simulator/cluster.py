"""The cluster snapshot: what `kubectl get pods,namespaces,nodes,services,endpointslices
-A -o json|yaml` prints, reduced to what resolution and evaluation need."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .documents import Document, read_documents
from .errors import InputError
from .ipnet import canonical_ip, parse_cidr

NS_NAME_LABEL = "kubernetes.io/metadata.name"
TERMINAL_PHASES = ("Succeeded", "Failed")
_USED_KINDS = ("Pod", "Namespace", "Node", "Service", "EndpointSlice", "Endpoints",
               "ConfigMap")
# the ConfigMap Cilium reads its configuration from (the cluster's name, among others)
CILIUM_CONFIG = ("kube-system", "cilium-config")


@dataclass(frozen=True)
class ContainerPort:
    name: str | None
    port: int
    protocol: str


@dataclass
class Pod:
    namespace: str
    name: str
    ips: list[str]
    labels: dict[str, str]
    node: str | None
    host_network: bool
    workload: str
    ports: list[ContainerPort]
    created: float | None
    deleted: float | None
    phase: str | None
    service_account: str = "default"
    # since when the pod was Ready (its Ready condition's lastTransitionTime; None: not
    # known, or not Ready: the EndpointSlice's ready condition says whether it serves)
    ready_since: float | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}@{self.created or 0:.0f}"


@dataclass
class Node:
    name: str
    ips: list[str]
    pod_cidrs: list[str]
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServicePort:
    name: str            # "" for a Service's single unnamed port
    protocol: str
    port: int
    target: int | str    # targetPort: a number, or a container port's name
    node_port: int | None = None


@dataclass
class Service:
    namespace: str
    name: str
    cluster_ips: list[str]
    labels: dict[str, str] = field(default_factory=dict)
    selector: dict[str, str] | None = None  # None: a Service without selector
    type: str = "ClusterIP"
    ports: list[ServicePort] = field(default_factory=list)
    external_ips: list[str] = field(default_factory=list)      # spec.externalIPs
    lb_ips: list[str] = field(default_factory=list)            # status.loadBalancer.ingress
    local_traffic: bool = False     # externalTrafficPolicy: Local (the client is kept)


@dataclass(frozen=True)
class Backend:
    """One endpoint of a Service for one of its ports (EndpointSlice or Endpoints)."""
    namespace: str
    service: str
    port_name: str
    protocol: str
    port: int           # the port the backend serves on (the resolved targetPort)
    ip: str
    ready: bool
    pod: str | None     # the targetRef pod's name, when it names one


@dataclass
class Cluster:
    pods: list[Pod] = field(default_factory=list)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    # (namespace, service name) -> the addresses of its endpoints (EndpointSlices, or
    # legacy Endpoints)
    endpoints: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    legacy_endpoints: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    # per Service port and endpoint, from EndpointSlices, and from legacy Endpoints
    backends: list[Backend] = field(default_factory=list)
    legacy_backends: list[Backend] = field(default_factory=list)
    cilium_config: dict[str, str] | None = None
    files: list[str] = field(default_factory=list)
    ignored_kinds: Counter[str] = field(default_factory=Counter)
    # items that could not be understood, skipped: "file: document N (Kind ns/name): why"
    skipped: list[str] = field(default_factory=list)

    def namespace_labels(self, ns: str) -> dict[str, str]:
        labels = dict(self.namespaces.get(ns, {}))
        labels[NS_NAME_LABEL] = ns
        return labels

    @property
    def pod_cidrs(self) -> list[str]:
        return [c for n in self.nodes for c in n.pod_cidrs]

    def service_endpoints(self, namespace: str, name: str) -> list[str]:
        """A Service's endpoint addresses: its EndpointSlices, else legacy Endpoints."""
        key = (namespace, name)
        return self.endpoints.get(key) or self.legacy_endpoints.get(key, [])

    def service_backends(self) -> list[Backend]:
        """Every Service's backends: from its EndpointSlices, else its legacy Endpoints
        (a snapshot taken without endpointslices)."""
        sliced = {(b.namespace, b.service) for b in self.backends}
        return self.backends + [b for b in self.legacy_backends
                                if (b.namespace, b.service) not in sliced]


def parse_time(value: Any, doc: Document, field_name: str) -> float | None:
    if value in (None, ""):
        return None
    try:
        t = value if isinstance(value, datetime) else datetime.fromisoformat(
            str(value).replace("Z", "+00:00"))
        # Kubernetes writes UTC; a time without an offset is taken as UTC too
        return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError):
        raise InputError(doc.path, f"{field_name}: not an RFC 3339 time: {value!r}",
                         doc.where) from None


def _mapping(value: Any, doc: Document, field_name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(doc.path, f"{field_name}: expected a mapping", doc.where)
    return value


def _labels(meta: dict[str, Any], doc: Document) -> dict[str, str]:
    out = {}
    for k, v in _mapping(meta.get("labels"), doc, "metadata.labels").items():
        if isinstance(v, (dict, list)):
            raise InputError(doc.path, f"metadata.labels: the value of {str(k)!r} is not "
                                       "a string", doc.where)
        out[str(k)] = "" if v is None else str(v)
    return out


def _name(meta: dict[str, Any], doc: Document) -> str:
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise InputError(doc.path, "metadata.name: missing", doc.where)
    return name


def _ips(values: Iterable[Any], doc: Document, field_name: str) -> list[str]:
    out: list[str] = []
    for v in values:
        if v in (None, ""):
            continue
        ip = canonical_ip(v) if isinstance(v, str) and "%" not in v else None
        if ip is None:
            raise InputError(doc.path, f"{field_name}: not an IP address: {v!r}", doc.where)
        if ip not in out:
            out.append(ip)
    return out


def _port_number(value: Any) -> int | None:
    """A container port as the API server accepts it: an integer 1-65535 (no floats)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and value.strip().isdigit():
        n = int(value)
    else:
        return None
    return n if 1 <= n <= 65535 else None


def workload_of(meta: dict[str, Any], labels: dict[str, str]) -> str:
    """Name the controller that owns a pod; a Deployment's ReplicaSet is named by the
    Deployment (the pod-template-hash suffix stripped)."""
    owners = [o for o in meta.get("ownerReferences") or [] if isinstance(o, dict)]
    owner = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    if not owner:
        return f"Pod/{meta.get('name')}"
    kind, name = str(owner.get("kind", "")), str(owner.get("name", ""))
    template_hash = labels.get("pod-template-hash")
    if kind == "ReplicaSet" and template_hash and name.endswith("-" + template_hash):
        return f"Deployment/{name[: -len(template_hash) - 1]}"
    if kind == "Job" and re.fullmatch(r".+-\d{8,}", name) and labels.get("job-name") == name:
        return f"CronJob/{name.rsplit('-', 1)[0]}"
    return f"{kind}/{name}"


def _container_ports(spec: dict[str, Any], doc: Document) -> list[ContainerPort]:
    out: list[ContainerPort] = []
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    for c in containers:
        for p in _mapping(c, doc, "spec.containers[]").get("ports") or []:
            p = _mapping(p, doc, "spec.containers[].ports[]")
            number = _port_number(p.get("containerPort"))
            if number is None:
                raise InputError(doc.path, "spec.containers[].ports[].containerPort: not a "
                                 f"port number: {p.get('containerPort')!r}", doc.where)
            name = p.get("name")
            out.append(ContainerPort(str(name) if name else None, number,
                                     str(p.get("protocol") or "TCP").upper()))
    return out


def _finished_at(status: dict[str, Any], doc: Document) -> float | None:
    times = []
    for cs in status.get("containerStatuses") or []:
        term = ((cs or {}).get("state") or {}).get("terminated") or {}
        t = parse_time(term.get("finishedAt"), doc, "status.containerStatuses[].finishedAt")
        if t is not None:
            times.append(t)
    return max(times) if times else None


def _readiness(status: dict[str, Any], doc: Document) -> dict[str, Any]:
    """Since when the pod is Ready, if its Ready condition says it is."""
    for c in status.get("conditions") or []:
        c = _mapping(c, doc, "status.conditions[]")
        if c.get("type") == "Ready":
            since = parse_time(c.get("lastTransitionTime"), doc,
                               "status.conditions[].lastTransitionTime")
            return {"ready_since": since} if str(c.get("status")) == "True" else {}
    return {}


def _pod(doc: Document) -> Pod:
    obj = doc.obj
    meta = _mapping(obj.get("metadata"), doc, "metadata")
    spec = _mapping(obj.get("spec"), doc, "spec")
    status = _mapping(obj.get("status"), doc, "status")
    name, ns = _name(meta, doc), meta.get("namespace") or "default"
    labels = _labels(meta, doc)
    raw_ips = []
    for i, p in enumerate(status.get("podIPs") or []):
        if not isinstance(p, dict) or not p.get("ip"):
            raise InputError(doc.path, f"status.podIPs[{i}].ip: missing", doc.where)
        raw_ips.append(p["ip"])
    if not raw_ips and status.get("podIP"):
        raw_ips = [status["podIP"]]
    phase = status.get("phase")
    if phase == "Running" and not raw_ips:
        raise InputError(doc.path, "status.podIP: a Running pod without an IP address",
                         doc.where)
    deleted = parse_time(meta.get("deletionTimestamp"), doc, "metadata.deletionTimestamp")
    if phase in TERMINAL_PHASES:
        # A finished pod gives its IP back; it held it only until its containers ended.
        finished = _finished_at(status, doc)
        if finished is not None and (deleted is None or finished < deleted):
            deleted = finished
    return Pod(
        namespace=str(ns), name=str(name),
        ips=_ips(raw_ips, doc, "status.podIPs"),
        labels=labels,
        node=spec.get("nodeName"),
        host_network=bool(spec.get("hostNetwork")),
        workload=workload_of(meta, labels),
        ports=_container_ports(spec, doc),
        created=parse_time(meta.get("creationTimestamp"), doc, "metadata.creationTimestamp"),
        deleted=deleted,
        phase=phase,
        service_account=str(spec.get("serviceAccountName") or spec.get("serviceAccount")
                            or "default"),
        **_readiness(status, doc),
    )


def _node(doc: Document) -> Node:
    meta = _mapping(doc.obj.get("metadata"), doc, "metadata")
    spec = _mapping(doc.obj.get("spec"), doc, "spec")
    status = _mapping(doc.obj.get("status"), doc, "status")
    addrs = [a.get("address") for a in status.get("addresses") or []
             if isinstance(a, dict) and a.get("type") in ("InternalIP", "ExternalIP")]
    cidrs = list(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))
    for c in cidrs:
        try:
            parse_cidr(str(c))
        except ValueError:
            raise InputError(doc.path, f"spec.podCIDRs: not a CIDR: {c!r}", doc.where) from None
    return Node(_name(meta, doc), _ips(addrs, doc, "status.addresses"),
                [str(c) for c in cidrs], _labels(meta, doc))


def _service_ports(spec: dict[str, Any], doc: Document) -> list[ServicePort]:
    out = []
    for i, p in enumerate(spec.get("ports") or []):
        p = _mapping(p, doc, f"spec.ports[{i}]")
        port = _port_number(p.get("port"))
        if port is None:
            raise InputError(doc.path, f"spec.ports[{i}].port: not a port number: "
                                       f"{p.get('port')!r}", doc.where)
        target = p.get("targetPort")
        # targetPort defaults to port; a string of digits is a number (IntOrString)
        number = _port_number(target) if target not in (None, "") else port
        if number is None and not (isinstance(target, str) and target.strip()):
            raise InputError(doc.path, f"spec.ports[{i}].targetPort: not a port number "
                                       f"or name: {target!r}", doc.where)
        node_port = _port_number(p.get("nodePort")) if p.get("nodePort") else None
        out.append(ServicePort(str(p.get("name") or ""),
                               str(p.get("protocol") or "TCP").upper(), port,
                               number if number is not None else str(target).strip(),
                               node_port))
    return out


def _service(doc: Document) -> Service:
    meta = _mapping(doc.obj.get("metadata"), doc, "metadata")
    spec = _mapping(doc.obj.get("spec"), doc, "spec")
    status = _mapping(doc.obj.get("status"), doc, "status")
    ips = list(spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else []))
    ips = [i for i in ips if i and i != "None"]
    selector = spec.get("selector")
    if selector is not None and not isinstance(selector, dict):
        raise InputError(doc.path, "spec.selector: expected a mapping", doc.where)
    lb = _mapping(status.get("loadBalancer"), doc, "status.loadBalancer")
    lb_ips = [_mapping(i, doc, "status.loadBalancer.ingress[]").get("ip")
              for i in lb.get("ingress") or []]
    kind = str(spec.get("type") or "ClusterIP")
    return Service(str(meta.get("namespace") or "default"), _name(meta, doc),
                   _ips(ips, doc, "spec.clusterIPs"), _labels(meta, doc),
                   {str(k): str(v) for k, v in selector.items()} if selector else None,
                   type=kind, ports=_service_ports(spec, doc),
                   external_ips=_ips(list(spec.get("externalIPs") or []), doc,
                                     "spec.externalIPs"),
                   lb_ips=_ips([i for i in lb_ips if i], doc,
                               "status.loadBalancer.ingress[].ip"),
                   local_traffic=str(spec.get("externalTrafficPolicy") or "") == "Local")


def _endpoint_ports(ports: Any, doc: Document, where: str) -> list[tuple[str, str, int]]:
    """(name, protocol, port) of an EndpointSlice's or an Endpoints subset's ports."""
    out = []
    for i, p in enumerate(ports or []):
        p = _mapping(p, doc, f"{where}[{i}]")
        port = _port_number(p.get("port"))
        if port is None:  # a slice without ports: the Service's ports are all unresolved
            continue
        out.append((str(p.get("name") or ""), str(p.get("protocol") or "TCP").upper(), port))
    return out


def _target_pod(ref: Any, doc: Document, where: str) -> str | None:
    ref = _mapping(ref, doc, where)
    return str(ref["name"]) if ref.get("kind", "Pod") == "Pod" and ref.get("name") else None


def _endpoint_slice(doc: Document) -> tuple[tuple[str, str], list[str], list[Backend]] | None:
    meta = _mapping(doc.obj.get("metadata"), doc, "metadata")
    service = _labels(meta, doc).get("kubernetes.io/service-name")
    if not service:
        return None
    ns = str(meta.get("namespace") or "default")
    ports = _endpoint_ports(doc.obj.get("ports"), doc, "ports")
    addrs: list[str] = []
    backends = []
    for ep in doc.obj.get("endpoints") or []:
        ep = _mapping(ep, doc, "endpoints[]")
        ips = _ips(list(ep.get("addresses") or []), doc, "endpoints[].addresses")
        # ready: a nil value means ready (discovery.k8s.io/v1 EndpointConditions)
        ready = _mapping(ep.get("conditions"), doc, "endpoints[].conditions").get("ready")
        pod = _target_pod(ep.get("targetRef"), doc, "endpoints[].targetRef")
        addrs += ips
        backends += [Backend(ns, service, name, proto, port, ip, ready is not False, pod)
                     for ip in ips for name, proto, port in ports]
    return (ns, service), addrs, backends


def _legacy_endpoints(doc: Document) -> tuple[tuple[str, str], list[str], list[Backend]]:
    meta = _mapping(doc.obj.get("metadata"), doc, "metadata")
    ns, service = str(meta.get("namespace") or "default"), _name(meta, doc)
    addrs: list[str] = []
    backends = []
    for subset in doc.obj.get("subsets") or []:
        subset = _mapping(subset, doc, "subsets[]")
        ports = _endpoint_ports(subset.get("ports"), doc, "subsets[].ports")
        for field_name, ready in (("addresses", True), ("notReadyAddresses", False)):
            for a in subset.get(field_name) or []:
                a = _mapping(a, doc, f"subsets[].{field_name}[]")
                got = _ips([a.get("ip")], doc, f"subsets[].{field_name}[].ip")
                if not got:
                    continue
                ip = got[0]
                if ready:
                    addrs.append(ip)
                pod = _target_pod(a.get("targetRef"), doc,
                                  f"subsets[].{field_name}[].targetRef")
                backends += [Backend(ns, service, name, proto, port, ip, ready, pod)
                             for name, proto, port in ports]
    return (ns, service), addrs, backends


def _item(cluster: Cluster, doc: Document) -> None:
    kind = doc.obj.get("kind")
    if kind == "Pod":
        cluster.pods.append(_pod(doc))
    elif kind == "Namespace":
        meta = _mapping(doc.obj.get("metadata"), doc, "metadata")
        cluster.namespaces[_name(meta, doc)] = _labels(meta, doc)
    elif kind == "Node":
        cluster.nodes.append(_node(doc))
    elif kind == "Service":
        cluster.services.append(_service(doc))
    elif kind == "EndpointSlice":
        found = _endpoint_slice(doc)
        if found:
            cluster.endpoints.setdefault(found[0], [])
            cluster.endpoints[found[0]] += [a for a in found[1]
                                            if a not in cluster.endpoints[found[0]]]
            cluster.backends += found[2]
    elif kind == "Endpoints":
        key, addrs, backends = _legacy_endpoints(doc)
        cluster.legacy_endpoints[key] = addrs
        cluster.legacy_backends = [b for b in cluster.legacy_backends
                                   if (b.namespace, b.service) != key] + backends
    elif kind == "ConfigMap":
        meta = _mapping(doc.obj.get("metadata"), doc, "metadata")
        if (meta.get("namespace"), meta.get("name")) == CILIUM_CONFIG:
            data = _mapping(doc.obj.get("data"), doc, "data")
            cluster.cilium_config = {str(k): str(v) for k, v in data.items()}
    elif kind not in _USED_KINDS:
        cluster.ignored_kinds[str(kind)] += 1


def read_cluster_file(path: Path) -> Cluster:
    """One snapshot file's objects (files are read apart, maybe in worker processes).

    The file must hold something; an item that cannot be understood (a pod with a bad
    address, a missing name, a bad time, port or pod CIDR, a document that is not an
    object) is skipped and named in `skipped`: one bad item never hides the rest of the
    cluster, and the run says what it could not map."""
    cluster = Cluster(files=[str(path)])

    def bad(where: str, why: str) -> None:
        cluster.skipped.append(f"{path}: {where}: {why}")

    objects = 0
    for doc in read_documents(path, on_bad=bad, require_content=True):
        objects += 1
        try:
            _item(cluster, doc)
        except InputError as e:
            cluster.skipped.append(str(e))
        except (TypeError, ValueError, AttributeError, KeyError, RecursionError) as e:
            bad(doc.where, f"cannot be understood ({type(e).__name__})")
    if not objects and cluster.skipped:
        # nothing in the file is an object: not a snapshot at all
        raise InputError(path, "no Kubernetes object in the file ("
                               f"{cluster.skipped[0].removeprefix(f'{path}: ')})")
    return cluster


def merge_clusters(parts: Iterable[Cluster]) -> Cluster:
    """The snapshot the files make together, in the order given (a later file's namespace
    labels win)."""
    cluster = Cluster()
    for part in parts:
        cluster.pods += part.pods
        cluster.namespaces.update(part.namespaces)
        cluster.nodes += part.nodes
        cluster.services += part.services
        for key, addrs in part.endpoints.items():
            cluster.endpoints.setdefault(key, [])
            cluster.endpoints[key] += [a for a in addrs if a not in cluster.endpoints[key]]
        cluster.legacy_endpoints.update(part.legacy_endpoints)
        cluster.backends += part.backends
        replaced = {(b.namespace, b.service) for b in part.legacy_backends}
        cluster.legacy_backends = [b for b in cluster.legacy_backends
                                   if (b.namespace, b.service) not in replaced]
        cluster.legacy_backends += part.legacy_backends
        if part.cilium_config is not None:
            cluster.cilium_config = part.cilium_config
        cluster.files += part.files
        cluster.ignored_kinds.update(part.ignored_kinds)
        cluster.skipped += part.skipped
    return cluster
