"""Load a policy set: every manifest below the given directories, dialects dispatched by
apiVersion/kind, everything else counted and named as ignored. Files are read apart (maybe
in worker processes, see manifests.py) and merged in order."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..documents import Document, read_documents
from ..errors import PolicyError
from . import anp_v1alpha1, banp_v1alpha1, cilium_v2, cnp
from .ir import Policy
from .netpol_v1 import API_VERSION, KIND, compile_networkpolicy
from .npapi import Notes

# (apiVersion, kind) -> compiler (one manifest may hold several rule sets, as Cilium's
# `specs` do). A new dialect is a new module and one line here.
DIALECTS: dict[tuple[str, str], Callable[[Document, Notes], Policy | list[Policy]]] = {
    (API_VERSION, KIND): lambda doc, notes: compile_networkpolicy(doc),
    (anp_v1alpha1.API_VERSION, anp_v1alpha1.KIND): anp_v1alpha1.compile_anp,
    (banp_v1alpha1.API_VERSION, banp_v1alpha1.KIND): banp_v1alpha1.compile_banp,
    **{(v, cnp.KIND): cnp.compile_cnp for v in cnp.API_VERSIONS},
    (cilium_v2.API_VERSION, cilium_v2.CNP): cilium_v2.compile_cilium,
    (cilium_v2.API_VERSION, cilium_v2.CCNP): cilium_v2.compile_cilium,
}
# objects policies refer to by name (cidrGroupRef), read apart and bound at merge
REFERENCED = {(v, cilium_v2.CIDR_GROUP) for v in cilium_v2.CIDR_GROUP_VERSIONS}


@dataclass
class PolicySet:
    name: str
    policies: list[Policy] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)  # "apiVersion kind" -> count
    # policy ref -> the manifest as written, for fixes that edit it
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)
    # how the set was read, worth a warning (e.g. peers of a newer API, failing closed)
    notes: list[str] = field(default_factory=list)
    # CiliumCIDRGroup name -> its CIDRs
    cidr_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # kind -> how many policies of it the run's CNI profile does not enforce (cni.py)
    not_enforced: dict[str, int] = field(default_factory=dict)
    # policies given again in a later file, which replaced the earlier (kubectl apply)
    replaced: list[str] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(p.kind == kind for p in self.policies)


# One file's share of a set: its policies with their manifests, the ignored kinds, the
# notes of its reading, and the CIDR groups it defines.
PolicyFile = tuple[list[tuple[Policy, dict[str, Any]]], Counter[str], list[str],
                   dict[str, tuple[str, ...]]]


def read_policy_file(path: Path) -> PolicyFile:
    compiled: list[tuple[Policy, dict[str, Any]]] = []
    ignored: Counter[str] = Counter()
    groups: dict[str, tuple[str, ...]] = {}
    notes = Notes()
    for doc in read_documents(path):
        for key_field in ("apiVersion", "kind"):
            if not isinstance(doc.obj.get(key_field, ""), str):
                raise PolicyError(path, f"{key_field}: must be a string, got "
                                        f"{doc.obj[key_field]!r}", doc.where)
        key = (str(doc.obj.get("apiVersion", "")), str(doc.obj.get("kind", "")))
        compiler = DIALECTS.get(key)
        if key in REFERENCED:
            name, cidrs = cilium_v2.read_cidr_group(doc)
            groups[name] = cidrs
        elif compiler is None:
            ignored[f"{key[0]} {key[1]}".strip() or "(no kind)"] += 1
        else:
            out = compiler(doc, notes)
            for policy in out if isinstance(out, list) else [out]:
                compiled.append((policy, doc.obj))
    return compiled, ignored, notes.lines, groups


def merge_policy_files(name: str, parts: Iterable[tuple[Path, PolicyFile]]) -> PolicySet:
    """The set the files make together, in the order given; a policy given again (same
    kind, namespace and name) replaces the earlier one. A cluster has one
    BaselineAdminNetworkPolicy: a second in one file is refused, as the API server would
    (its name is always `default`)."""
    pset = PolicySet(name)
    baseline_at: tuple[str, str] | None = None   # (file, where)
    # (kind, namespace, name) -> (the file that defined it, its manifest's id): the rule
    # sets of one manifest (Cilium's `specs`) share a name
    defined: dict[tuple[str, str | None, str], tuple[str, int]] = {}
    entries: list[tuple[Policy, tuple[str, str | None, str], int]] = []
    for path, (compiled, ignored, notes, groups) in parts:
        pset.files.append(str(path))
        for policy, manifest in compiled:
            ident = (policy.kind, policy.namespace, policy.name)
            if policy.kind == banp_v1alpha1.KIND:
                if baseline_at is not None and baseline_at[0] == str(path):
                    raise PolicyError(path, f"a second BaselineAdminNetworkPolicy "
                                            f"({policy.source}; the first is "
                                            f"{baseline_at[1]}): a cluster has one")
                baseline_at = (str(path), policy.source)
            earlier = defined.get(ident)
            if earlier is not None and earlier[1] != id(manifest):
                # the same object applied again replaces the earlier one, as `kubectl
                # apply` would (the way the files of --fixes-dir are tried)
                if (pset.manifests.get(policy.ref) or {}).get("kind") == manifest.get("kind"):
                    pset.manifests.pop(policy.ref)
                pset.replaced.append(f"{policy.ref} (from {earlier[0]}) by {policy.source}")
            defined[ident] = (str(path), id(manifest))
            entries.append((policy, ident, id(manifest)))
            pset.manifests.setdefault(policy.ref, manifest)
        pset.ignored.update(ignored)
        pset.notes += notes
        pset.cidr_groups.update(groups)
    pset.policies = [p for p, ident, mid in entries if defined[ident][1] == mid]
    missing = sorted({p.group for pol in pset.policies for r in pol.rules for p in r.peers
                      if isinstance(p, cilium_v2.CidrGroupRef)} - set(pset.cidr_groups))
    if missing:
        pset.notes.append(f"{name}: cidrGroupRef to {', '.join(missing)}: no such "
                          "CiliumCIDRGroup in the set; the reference matches nothing")
    pset.policies = [cilium_v2.bind_cidr_groups(p, pset.cidr_groups) for p in pset.policies]
    return pset
