"""Read every manifest a run needs (the policy sets and the cluster snapshot).

Parsing YAML and JSON into objects is the one long Python step of a run (PyYAML builds
every object in Python, ~0.3 ms per policy). When there is enough to read, forked worker
processes parse files while the caller goes on (importing DuckDB, connecting); when the
caller asks for the result it parses the files no one has started. Results are merged in
the order the files were given, so the sets, and the first error reported (policies
before the snapshot, as when read in turn), are the same as reading one file after the
other. Forking happens before DuckDB starts its threads."""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import queue
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .cluster import Cluster, merge_clusters, read_cluster_file
from .documents import expand_paths
from .policy.loader import PolicySet, merge_policy_files, read_policy_file

# Below this many bytes of manifests, forking workers costs more than it saves.
PARALLEL_MIN_BYTES = 256 * 1024

# A task: ("policy" | "cluster", file)
Task = tuple[str, Path]


@contextmanager
def no_gc() -> Iterator[None]:
    """Parsing builds millions of objects and no garbage cycles: the collector would only
    walk the growing trees again and again (it doubled the snapshot's parse time)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _read(tasks: list[Task]) -> list[Any]:
    out: list[Any] = []
    for kind, path in tasks:
        try:
            out.append(read_policy_file(path) if kind == "policy" else read_cluster_file(path))
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


def _work(chunks: list[list[Task]], counter: Any,
          each: Callable[[int, list[Any]], None] | None = None) -> dict[int, list[Any]]:
    """Parse chunks until none is left; each(i, parsed) after every chunk."""
    done = {}
    while (i := _take(counter, len(chunks))) is not None:
        done[i] = _read(chunks[i])
        if each is not None:
            each(i, done[i])
    return done


def _worker(chunks: list[list[Task]], counter: Any, send: Any) -> None:
    # The command's handlers, inherited, would announce the end of the run: a worker that
    # close() stops on its way out, or that gets the Ctrl-C meant for its process group,
    # ends without a word (the command says what happened, once)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    gc.disable()  # a short-lived process that makes no garbage cycles (see no_gc)
    # Each chunk goes back as soon as it is parsed, so the caller unpickles it while this
    # parses on; written by a thread, so a full pipe (the caller is busy parsing a chunk
    # of its own) never holds up the parsing.
    outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def post() -> None:
        while (data := outbox.get()) is not None:
            send.send_bytes(data)

    # a daemon: a worker stopped mid-parse must not wait for it
    poster = threading.Thread(target=post, daemon=True)
    poster.start()
    _work(chunks, counter, lambda i, parsed: outbox.put(pickle.dumps({i: parsed}, -1)))
    outbox.put(None)
    poster.join()
    send.send_bytes(pickle.dumps(None))  # no more
    send.close()


class PendingManifests:
    """Manifests being read; result() waits for them.

    Forked workers and, once it calls result(), this process take chunks of files from a
    shared counter, so whoever is free parses the next one; a worker sends each chunk as
    soon as it is parsed, and a last message when it has none left."""

    def __init__(self, sets: list[tuple[str, list[Path]]], cluster: list[Path],
                 chunks: list[list[Task]], workers: int) -> None:
        self._sets, self._cluster, self._chunks = sets, cluster, chunks
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

    def result(self, on_cluster: Callable[[Cluster], None] | None = None
               ) -> tuple[PolicySet, PolicySet | None, Cluster]:
        """(candidate, baseline or None, cluster snapshot); raises the first bad file's
        error. on_cluster(snapshot): called once, as soon as the snapshot is read without
        error (while workers may still parse policies; when everything is parsed in this
        process, at the end), so that the caller can start what needs only the snapshot."""
        self._on_cluster = on_cluster
        self._early: Cluster | None = None
        try:
            with no_gc():
                parsed = self._gather()
        finally:
            self.close()

        def part(kind: str, path: Path) -> Any:
            got = parsed[(kind, path)]
            if isinstance(got, Exception):
                raise got
            return got

        sets = [merge_policy_files(name, [(p, part("policy", p)) for p in paths])
                for name, paths in self._sets]
        cluster = self._early or merge_clusters(part("cluster", p) for p in self._cluster)
        if self._on_cluster is not None:  # read last, or in this process alone
            on_cluster, self._on_cluster = self._on_cluster, None
            on_cluster(cluster)
        return sets[0], sets[1] if len(sets) > 1 else None, cluster

    def _gather(self) -> dict[Task, Any]:
        done: dict[int, list[Any]] = {}
        open_pipes = list(self._pipes)

        def receive(block: bool) -> None:
            """What the workers sent (all of it when block, else what has arrived)."""
            for pipe in list(open_pipes):
                while block or pipe.poll():
                    try:
                        message = pickle.loads(pipe.recv_bytes())
                    except EOFError:  # a worker died: what it took is parsed below
                        message = None
                    if message is None:
                        open_pipes.remove(pipe)
                        break
                    done.update(message)

        snapshot = [i for i, chunk in enumerate(self._chunks) if chunk[0][0] == "cluster"]

        def check() -> None:
            """Hand over the snapshot as soon as all of it is in (and none of it failed)."""
            if self._on_cluster is None or not all(i in done for i in snapshot):
                return
            on_cluster, self._on_cluster = self._on_cluster, None
            got = {t: r for i in snapshot for t, r in zip(self._chunks[i], done[i], strict=True)}
            parts = [got[("cluster", p)] for p in self._cluster]
            if not any(isinstance(p, Exception) for p in parts):  # (no snapshot: empty)
                self._early = merge_clusters(parts)
                on_cluster(self._early)

        def between(i: int | None = None, parsed: Any = None) -> None:
            receive(False)
            check()

        if self._counter is not None:
            between()
            done.update(_work(self._chunks, self._counter, between))
        receive(True)
        parsed: dict[Task, Any] = {}
        for i, chunk in enumerate(self._chunks):
            parsed.update(zip(chunk, done.get(i) or _read(chunk), strict=True))
        wanted = [("policy", p) for _, paths in self._sets for p in paths]
        missing = [t for t in wanted + [("cluster", p) for p in self._cluster]
                   if t not in parsed]
        parsed.update(zip(missing, _read(missing), strict=True))
        return parsed

    def close(self) -> None:
        for pipe in self._pipes:
            pipe.close()
        for proc in self._procs:
            if proc.is_alive():  # stopped mid-parse (an error, a signal): nothing of it is
                proc.kill()      # needed, and a SIGKILL can be neither caught nor lost
            proc.join()
        self._procs, self._pipes = [], []


def _workers() -> int:
    if "fork" not in multiprocessing.get_all_start_methods():
        return 0
    cpus = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1))
    # this process goes on meanwhile, then takes chunks too
    return max(0, min(cpus - 1, 8))


def start_reading(candidate: Sequence[str | Path], baseline: Sequence[str | Path] | None,
                  cluster: Sequence[str | Path]) -> PendingManifests:
    """Start reading the candidate policies, the baseline policies (None: no baseline set)
    and the cluster snapshot (no paths: an empty one)."""
    sets = [("candidate", expand_paths(candidate, "--policies", require_manifests=True))]
    if baseline is not None:
        sets.append(("baseline", expand_paths(baseline, "--baseline", require_manifests=True)))
    cluster_files = expand_paths(cluster, "--cluster", require_manifests=True)
    tasks = {("policy", p) for _, paths in sets for p in paths} | {
        ("cluster", p) for p in cluster_files}
    sizes = {t: t[1].stat().st_size if t[1].is_file() else 0 for t in tasks}
    workers = (_workers() if sum(sizes.values()) >= PARALLEL_MIN_BYTES and len(tasks) > 1
               else 0)
    if not workers:
        return PendingManifests(sets, cluster_files, [], 0)
    # a few chunks per process, dealt biggest file first, so that the last ones are small;
    # each snapshot file a chunk of its own, first (the biggest, and sent back at once)
    ordered = sorted((t for t in tasks if t[0] == "policy"), key=lambda t: (-sizes[t], t))
    chunks: list[list[Task]] = [[] for _ in range(min(len(ordered), 4 * (workers + 1)))]
    for i, task in enumerate(ordered):
        chunks[i % len(chunks)].append(task)
    snapshot = [[t] for t in sorted((t for t in tasks if t[0] == "cluster"),
                                    key=lambda t: (-sizes[t], t))]
    return PendingManifests(sets, cluster_files, snapshot + chunks, workers)
