"""Read Kubernetes objects from JSON or (multi-document) YAML files, safely and bounded.

Both the cluster snapshot and the policy sets arrive this way. Every object keeps where
it came from (file, document index, item index inside a `kind: List`) so that later
errors can name it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError

MAX_FILE_BYTES = 512 * 1024 * 1024  # a kubectl dump of a very large cluster, with room
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Document:
    obj: dict[str, Any]
    path: Path
    index: int  # document index in the file (0-based)
    item: int | None = None  # index inside a kind: List, if it came from one

    @property
    def where(self) -> str:
        place = f"document {self.index}"
        if self.item is not None:
            place += f", item {self.item}"
        meta = self.obj.get("metadata") if isinstance(self.obj.get("metadata"), dict) else {}
        name = meta.get("name")
        if name:
            ns = meta.get("namespace")
            place += f" ({self.obj.get('kind', '?')} {ns + '/' if ns else ''}{name})"
        return place


def expand_paths(paths: Iterable[str | Path], what: str) -> list[Path]:
    """Files named, or every manifest file below the directories named, in sorted order."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*")
                           if f.is_file() and f.suffix.lower() in MANIFEST_SUFFIXES)
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(p, f"{what}: no such file or directory")
    return out


def _raw_documents(path: Path) -> list[Any]:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputError(path, f"file is {size} bytes, larger than the "
                                   f"{MAX_FILE_BYTES} byte limit for manifests")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(path, f"not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise InputError(path, e.strerror or str(e)) from None
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return [json.loads(text)]
        except json.JSONDecodeError as e:
            raise InputError(path, f"invalid JSON: {e.msg}", f"line {e.lineno}") from None
    try:
        return list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InputError(path, f"invalid YAML: {problem}", where) from None


def read_documents(path: Path) -> Iterator[Document]:
    """Yield every object in the file; `kind: List` (and a bare JSON array) expanded."""
    for index, doc in enumerate(_raw_documents(path)):
        if doc is None:
            continue  # an empty YAML document, e.g. after a trailing '---'
        if isinstance(doc, list):
            items, is_list = doc, True
        elif isinstance(doc, dict) and (doc.get("kind") == "List"
                                        or str(doc.get("kind", "")).endswith("List")) \
                and isinstance(doc.get("items"), list):
            items, is_list = doc["items"], True
        else:
            items, is_list = [doc], False
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise InputError(path, "expected a Kubernetes object (a mapping)",
                                 f"document {index}" + (f", item {i}" if is_list else ""))
            yield Document(item, path, index, i if is_list else None)
