"""Load a policy set: every manifest below the given directories, dialects dispatched by
apiVersion/kind, everything else counted and named as ignored.

Parsing YAML is the one long Python step of a run (PyYAML builds every object in Python,
~0.3 ms per policy), so large sets are parsed by forked worker processes, one file per
task, while the caller goes on (start_loading); results are merged in file order, so the
sets and the first error reported are the same as parsing in turn."""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
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

# Below this many bytes of manifests, forking workers costs more than it saves.
PARALLEL_MIN_BYTES = 256 * 1024


@dataclass
class PolicySet:
    name: str
    policies: list[Policy] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)  # "apiVersion kind" -> count
    # policy ref -> the manifest as written, for fixes that edit it
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)


# One file's share of a set: its policies with their manifests, and the ignored kinds.
_FileResult = tuple[list[tuple[Policy, dict[str, Any]]], Counter[str]]


def _load_file(path: Path) -> _FileResult:
    compiled: list[tuple[Policy, dict[str, Any]]] = []
    ignored: Counter[str] = Counter()
    for doc in read_documents(path):
        key = (str(doc.obj.get("apiVersion", "")), str(doc.obj.get("kind", "")))
        compiler = DIALECTS.get(key)
        if compiler is None:
            ignored[f"{key[0]} {key[1]}".strip() or "(no kind)"] += 1
        else:
            compiled.append((compiler(doc), doc.obj))
    return compiled, ignored


def _add(pset: PolicySet, path: Path, part: _FileResult) -> None:
    pset.files.append(str(path))
    compiled, ignored = part
    for policy, manifest in compiled:
        pset.policies.append(policy)
        pset.manifests.setdefault(policy.ref, manifest)
    pset.ignored.update(ignored)


def _option(name: str) -> str:
    return f"--{'policies' if name == 'candidate' else name}"


def _load_files(paths: list[Path]) -> list[_FileResult | Exception]:
    out: list[_FileResult | Exception] = []
    for path in paths:
        try:
            out.append(_load_file(path))
        except Exception as e:  # re-raised by the reader, in file order
            out.append(e)
    return out


def _take(counter: Any, n: int) -> int | None:
    with counter.get_lock():
        i = int(counter.value)
        if i >= n:
            return None
        counter.value = i + 1
        return i


def _work(chunks: list[list[Path]], counter: Any) -> dict[int, list[_FileResult | Exception]]:
    done = {}
    while (i := _take(counter, len(chunks))) is not None:
        done[i] = _load_files(chunks[i])
    return done


def _worker(chunks: list[list[Path]], counter: Any, send: Any) -> None:
    gc.disable()  # a short-lived process that makes no garbage cycles (see pipeline)
    send.send(_work(chunks, counter))
    send.close()


class PendingSets:
    """Policy sets being parsed; result() waits for them (and raises the first error in
    the order the files were given).

    Forked workers and, once it calls result(), this process take chunks of files from a
    shared counter, so whoever is free parses the next one; each worker sends what it
    parsed in one message at the end."""

    def __init__(self, files: list[tuple[str, list[Path]]], chunks: list[list[Path]],
                 workers: int) -> None:
        self._files, self._chunks = files, chunks
        self._procs: list[Any] = []
        self._pipes: list[Any] = []
        self._counter: Any = None
        if workers:
            ctx = multiprocessing.get_context("fork")
            self._counter = ctx.Value("i", 0)
            for _ in range(workers):
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_worker, args=(chunks, self._counter, send),
                                   daemon=True)
                proc.start()
                send.close()
                self._procs.append(proc)
                self._pipes.append(recv)

    def result(self) -> list[PolicySet]:
        try:
            parsed = self._gather()
        finally:
            self.close()
        sets = []
        for name, paths in self._files:
            pset = PolicySet(name)
            for path in paths:
                part = parsed[path]
                if isinstance(part, Exception):
                    raise part
                _add(pset, path, part)
            sets.append(pset)
        return sets

    def _gather(self) -> dict[Path, _FileResult | Exception]:
        done: dict[int, list[_FileResult | Exception]] = {}
        if self._counter is not None:
            done.update(_work(self._chunks, self._counter))
        for pipe in self._pipes:
            try:
                done.update(pipe.recv())
            except EOFError:  # a worker died: what it took is parsed below
                pass
        parsed: dict[Path, _FileResult | Exception] = {}
        for i, chunk in enumerate(self._chunks):
            parsed.update(zip(chunk, done.get(i) or _load_files(chunk), strict=True))
        for _, paths in self._files:
            missing = [p for p in paths if p not in parsed]
            parsed.update(zip(missing, _load_files(missing), strict=True))
        return parsed

    def close(self) -> None:
        for pipe in self._pipes:
            pipe.close()
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()
        self._procs, self._pipes = [], []


def _workers() -> int:
    if "fork" not in multiprocessing.get_all_start_methods():
        return 0
    cpus = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1))
    # this process reads the snapshot meanwhile, then takes chunks too
    return max(0, min(cpus - 1, 8))


def start_loading(sets: Sequence[tuple[str, Iterable[str | Path]]]) -> PendingSets:
    """Start parsing the named policy sets (name, paths); large ones in worker processes."""
    files = [(name, expand_paths(paths, _option(name))) for name, paths in sets]
    every = sorted({p for _, paths in files for p in paths}, key=lambda p: -p.stat().st_size)
    size = sum(p.stat().st_size for p in every)
    workers = _workers() if size >= PARALLEL_MIN_BYTES and len(every) > 1 else 0
    if not workers:
        return PendingSets(files, [], 0)
    # a few chunks per process, dealt biggest file first, so that the last ones are small
    chunks: list[list[Path]] = [[] for _ in range(min(len(every), 4 * (workers + 1)))]
    for i, path in enumerate(every):
        chunks[i % len(chunks)].append(path)
    return PendingSets(files, chunks, workers)
