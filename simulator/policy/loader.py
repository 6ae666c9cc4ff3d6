"""Load a policy set: every manifest below the given directories, dialects dispatched by
apiVersion/kind, everything else counted and named as ignored."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..documents import Document, expand_paths, read_documents
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


def load_policy_set(name: str, paths: Iterable[str | Path]) -> PolicySet:
    pset = PolicySet(name)
    for path in expand_paths(paths, f"--{'policies' if name == 'candidate' else name}"):
        pset.files.append(str(path))
        for doc in read_documents(path):
            key = (str(doc.obj.get("apiVersion", "")), str(doc.obj.get("kind", "")))
            compiler = DIALECTS.get(key)
            if compiler is None:
                pset.ignored[f"{key[0]} {key[1]}".strip() or "(no kind)"] += 1
            else:
                policy = compiler(doc)
                pset.policies.append(policy)
                pset.manifests.setdefault(policy.ref, doc.obj)
    return pset
