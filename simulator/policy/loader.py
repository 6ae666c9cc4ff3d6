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
from .ir import Policy
from .netpol_v1 import API_VERSION, KIND, compile_networkpolicy

# (apiVersion, kind) -> compiler. A new dialect is a new module and one line here.
DIALECTS: dict[tuple[str, str], Callable[[Document], Policy]] = {
    (API_VERSION, KIND): compile_networkpolicy,
}


@dataclass
class PolicySet:
    name: str
    policies: list[Policy] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)  # "apiVersion kind" -> count
    # policy ref -> the manifest as written, for fixes that edit it
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)


# One file's share of a set: its policies with their manifests, and the ignored kinds.
PolicyFile = tuple[list[tuple[Policy, dict[str, Any]]], Counter[str]]


def read_policy_file(path: Path) -> PolicyFile:
    compiled: list[tuple[Policy, dict[str, Any]]] = []
    ignored: Counter[str] = Counter()
    for doc in read_documents(path):
        for key_field in ("apiVersion", "kind"):
            if not isinstance(doc.obj.get(key_field, ""), str):
                raise PolicyError(path, f"{key_field}: must be a string, got "
                                        f"{doc.obj[key_field]!r}", doc.where)
        key = (str(doc.obj.get("apiVersion", "")), str(doc.obj.get("kind", "")))
        compiler = DIALECTS.get(key)
        if compiler is None:
            ignored[f"{key[0]} {key[1]}".strip() or "(no kind)"] += 1
        else:
            compiled.append((compiler(doc), doc.obj))
    return compiled, ignored


def merge_policy_files(name: str, parts: Iterable[tuple[Path, PolicyFile]]) -> PolicySet:
    """The set the files make together, in the order given (the first manifest of a
    policy name is the one fixes edit)."""
    pset = PolicySet(name)
    for path, (compiled, ignored) in parts:
        pset.files.append(str(path))
        for policy, manifest in compiled:
            pset.policies.append(policy)
            pset.manifests.setdefault(policy.ref, manifest)
        pset.ignored.update(ignored)
    return pset
