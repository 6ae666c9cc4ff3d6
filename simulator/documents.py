"""Read Kubernetes objects from JSON or (multi-document) YAML files, safely and bounded.

Both the cluster snapshot and the policy sets arrive this way. Every object keeps where
it came from (file, document index, item index inside a `kind: List`) so that later
errors can name it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError

MAX_FILE_BYTES = 512 * 1024 * 1024  # a kubectl dump of a very large cluster, with room
# PyYAML builds every node in Python (tens of bytes of text become hundreds of bytes of
# objects, at a few MB/s): past this, JSON (kubectl -o json) is the way.
MAX_YAML_BYTES = 128 * 1024 * 1024
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
# Kubernetes objects nest a dozen levels; far deeper is hostile (and would exhaust the
# recursion of whatever walks it).
MAX_DEPTH = 100
# YAML aliases share a node instead of copying it: a few lines can stand for billions of
# nodes ("billion laughs"). Legitimate anchors repeat small blocks a few times.
MAX_EXPANDED_NODES = 5_000_000

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Document:
    obj: dict[str, Any]
    path: Path
    index: int  # document index in the file (0-based)
    item: int | None = None  # index inside a kind: List, if it came from one

    @property
    def where(self) -> str:
        # counted from 1, as lines and records are
        place = f"document {self.index + 1}"
        if self.item is not None:
            place += f", item {self.item + 1}"
        meta = self.obj.get("metadata") if isinstance(self.obj.get("metadata"), dict) else {}
        name = meta.get("name")
        if name:
            ns = meta.get("namespace")
            place += f" ({self.obj.get('kind', '?')} {ns + '/' if ns else ''}{name})"
        return place


def expand_paths(paths: Iterable[str | Path], what: str,
                 require_manifests: bool = False) -> list[Path]:
    """Files named, or every manifest file below the directories named, in sorted order.
    require_manifests: a directory without any manifest file is an error (a wrong path is
    likelier than a deliberately empty set)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not str(raw).strip():  # Path("") is the current directory: never what was meant
            raise InputError(what, "an empty path")
        if p.is_dir():
            found = sorted(f for f in p.rglob("*")
                           if f.is_file() and f.suffix.lower() in MANIFEST_SUFFIXES)
            if not found and require_manifests:
                raise InputError(p, f"{what}: the directory holds no manifest file "
                                    f"({', '.join('*' + x for x in MANIFEST_SUFFIXES)})")
            out.extend(found)
        elif str(raw).endswith(("/", os.sep)) and p.exists():
            raise InputError(raw, f"{what}: not a directory")
        elif p.exists():  # a file, or a named pipe (--cluster <(kubectl get ...))
            out.append(p)
        else:
            raise InputError(p, f"{what}: no such file or directory")
    return out


def _measure(doc: Any, aliases: bool) -> tuple[int, int]:
    """(depth, nodes once aliases are expanded) of a loaded document, without recursion.
    Stops early past MAX_DEPTH. Containers shared through aliases are counted once per
    use, from a memo (aliases=True), so that a bomb is measured without being walked."""
    if not aliases:
        # only containers are walked (a snapshot's leaves outnumber them many times); the
        # count is of containers, and only the alias case needs a count at all
        if type(doc) is not dict and type(doc) is not list:
            return 1, 1
        depth = nodes = 0
        stack = [(doc, 1)]
        while stack:
            node, d = stack.pop()
            nodes += 1
            # a leaf below counts as a level, as a container does
            level = d + 1 if node else d
            if level > depth:
                depth = level
                if depth > MAX_DEPTH:
                    return depth, nodes
            for v in node.values() if type(node) is dict else node:
                if type(v) is dict or type(v) is list:
                    stack.append((v, d + 1))
        return depth, nodes
    # post-order over distinct containers: size and height of each, memoised by identity
    memo: dict[int, tuple[int, int]] = {}
    work: list[tuple[Any, bool]] = [(doc, False)]
    while work:
        node, children_done = work.pop()
        if not isinstance(node, (dict, list)) or id(node) in memo:
            continue
        kids = [v for v in (node.values() if isinstance(node, dict) else node)
                if isinstance(v, (dict, list))]
        if not children_done:
            work.append((node, True))
            work.extend((k, False) for k in kids if id(k) not in memo)
            continue
        size = 1 + (len(node) - len(kids))
        height = 1
        for k in kids:
            ks, kh = memo.get(id(k), (1, 1))  # a cycle (impossible in YAML) counts once
            size += ks
            height = max(height, kh + 1)
        memo[id(node)] = (min(size, 1 << 62), height)
        if height > MAX_DEPTH:
            return height, size
    return memo.get(id(doc), (1, 1))[::-1] if isinstance(doc, (dict, list)) else (1, 1)


def _check_shape(path: Path, docs: list[Any], aliases: bool) -> None:
    for index, doc in enumerate(docs):
        depth, nodes = _measure(doc, aliases)
        if depth > MAX_DEPTH:
            raise InputError(path, f"nested more than {MAX_DEPTH} levels deep; not a "
                                   "Kubernetes manifest", f"document {index + 1}")
        if aliases and nodes > MAX_EXPANDED_NODES:
            raise InputError(path, f"YAML aliases expand to {nodes:,} nodes, more than "
                                   f"{MAX_EXPANDED_NODES:,} (an alias bomb?); refused",
                             f"document {index + 1}")


# A \uD800-\uDFFF escape: decoded alone it is no character, and fails wherever the text
# is written as UTF-8 (a paired one is an ordinary character by then).
_SURROGATE_ESCAPE = re.compile(r"\\[uU]0{0,4}[dD][89a-fA-F][0-9a-fA-F]{2}")


def _unencodable(obj: Any) -> bool:
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _raw_documents(path: Path) -> tuple[list[Any], bool]:
    """The file's documents, and whether its text holds a surrogate escape."""
    try:
        if path.is_file():
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise InputError(path, f"file is {size:,} bytes, larger than the "
                                       f"{MAX_FILE_BYTES:,} byte limit for manifests")
        with path.open("rb") as fh:  # a named pipe is read once, bounded all the same
            data = fh.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise InputError(path, f"larger than the {MAX_FILE_BYTES:,} byte limit for "
                                   "manifests")
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(path, f"not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise InputError(path, f"cannot read: {e.strerror or e}") from None
    del data
    stripped = text.lstrip()
    json_name = path.suffix.lower() == ".json"
    if stripped.startswith(("{", "[")):
        try:
            docs = [json.loads(text)]
        except json.JSONDecodeError as e:
            if json_name:
                raise InputError(path, f"invalid JSON: {e.msg}", f"line {e.lineno}") from None
            docs = None  # flow-style YAML opens with a brace too: read as YAML below
        except ValueError as e:  # e.g. an integer of more digits than Python converts
            raise InputError(path, f"invalid JSON: {str(e).splitlines()[0]}") from None
        except RecursionError:
            raise InputError(path, "nested too deep; not a Kubernetes manifest") from None
        if docs is not None:
            _check_shape(path, docs, aliases=False)
            return docs, bool(_SURROGATE_ESCAPE.search(text))
    if len(text) > MAX_YAML_BYTES:
        raise InputError(path, f"YAML larger than {MAX_YAML_BYTES:,} bytes; give such a "
                               "snapshot as JSON (kubectl get ... -o json)")
    try:
        docs = list(yaml.load_all(text, Loader=_Loader))
    except RecursionError:
        raise InputError(path, "nested too deep; not a Kubernetes manifest") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InputError(path, f"invalid YAML: {problem}", where) from None
    except (ValueError, TypeError, OverflowError) as e:  # e.g. a date PyYAML cannot build
        raise InputError(path, f"invalid YAML: {str(e).splitlines()[0]}") from None
    # only a text with an anchor and an alias can share nodes
    _check_shape(path, docs, aliases="&" in text and "*" in text)
    return docs, bool(_SURROGATE_ESCAPE.search(text))


def read_documents(path: Path, on_bad: Callable[[str, str], None] | None = None,
                   require_content: bool = False) -> Iterator[Document]:
    """Yield every object in the file; `kind: List` (and a bare JSON array) expanded.

    An item that is not a mapping is an error, or, with on_bad, reported to
    on_bad(where, why) and skipped. require_content: a file without any document (empty,
    blank or only comments) is an error."""
    raw, surrogates = _raw_documents(path)
    if require_content and all(d is None for d in raw):
        raise InputError(path, "empty: no Kubernetes objects in the file")
    for index, doc in enumerate(raw):
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
            where = f"document {index + 1}" + (f", item {i + 1}" if is_list else "")
            problem = None
            if not isinstance(item, dict):
                problem = (f"not a Kubernetes object (a {type(item).__name__}, expected a "
                           "mapping)")
            elif surrogates and _unencodable(item):
                problem = "holds an unpaired UTF-16 surrogate escape: not valid Unicode"
            if problem:
                if on_bad is None:
                    raise InputError(path, problem, where)
                on_bad(where, problem)
                continue
            yield Document(item, path, index, i if is_list else None)
