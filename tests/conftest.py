"""Shared test fixtures: run the real CLI on worlds written in the real input formats."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))

from worldfiles import write_cluster, write_policies, write_vpc_parquet  # noqa: E402

from simulator.cli import main  # noqa: E402

Key = tuple[str, str, int | None, str]

INPUT_OPTIONS = ("--flows", "--cluster", "--policies", "--baseline")
OUTPUT_OPTIONS = ("--out", "--json", "--report", "--markdown", "--save-flows")


def _input_files(args: list[str]) -> list[Path]:
    files: list[Path] = []
    for option, value in zip(args, args[1:], strict=False):
        if option not in INPUT_OPTIONS or value in ("-", ""):
            continue  # an empty path is refused by the run, never the current directory
        p = Path(value)
        if p.is_dir():
            files += [f for f in p.rglob("*") if f.is_file()]
        elif p.is_file():
            files.append(p)
    return files


def _digests(files: list[Path]) -> dict[Path, str]:
    return {f: hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


@pytest.fixture(autouse=True)
def inputs_are_never_modified(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every CLI run in the tests that writes an output must leave every input file it was
    given byte-identical (the run's own promise: nothing the user gave is modified)."""
    original = CliRunner.invoke

    def invoke(self: CliRunner, cli: Any, args: Any = None, **kwargs: Any) -> Any:
        argv = [str(a) for a in args] if isinstance(args, list | tuple) else []
        files = _input_files(argv)
        before = _digests(files)
        result = original(self, cli, args, **kwargs)
        if any(a in OUTPUT_OPTIONS for a in argv):
            assert _digests(files) == before, f"an input changed: {argv}"
        return result

    monkeypatch.setattr(CliRunner, "invoke", invoke)


class Run:
    def __init__(self, result: Any, out: Path) -> None:
        self.result = result
        self.exit_code = result.exit_code
        self.output = result.output
        self.rows = pq.read_table(out).to_pylist() if out.exists() else []

    def conn(self, src: str, dst: str, port: int | None, proto: str = "TCP") -> dict[str, Any]:
        found = [r for r in self.rows if (r["src_ip"], r["dst_ip"], r["dst_port"],
                                          r["protocol"]) == (src, dst, port, proto)]
        assert len(found) == 1, f"expected one connection {src}->{dst}:{port}/{proto}, " \
                                f"got {found}; all: {[(r['src_ip'], r['dst_ip'], r['dst_port'], r['protocol']) for r in self.rows]}"  # noqa: E501
        return found[0]

    def verdict(self, src: str, dst: str, port: int | None, proto: str = "TCP") -> str:
        return self.conn(src, dst, port, proto)["candidate"]


@pytest.fixture
def simulate_world(tmp_path: Path) -> Callable[..., Run]:
    """Write cluster objects, policies and VPC records to disk and run `simulate`."""
    counter = iter(range(1000))

    def _run(objects: Iterable[Mapping[str, Any]], policies: Iterable[Mapping[str, Any]],
             records: Iterable[Mapping[str, Any]], *, baseline: Iterable[Mapping[str, Any]]
             | None = None, extra: list[str] | None = None) -> Run:
        d = tmp_path / f"run{next(counter)}"
        d.mkdir()
        args = ["--flows", str(write_vpc_parquet(d / "flows.parquet", records)),
                "--cluster", str(write_cluster(d / "cluster.json", objects)),
                "--policies", str(write_policies(d / "candidate", policies)),
                "--out", str(d / "out.parquet"), "--quiet"]
        if baseline is not None:
            args += ["--baseline", str(write_policies(d / "baseline", baseline))]
        result = CliRunner().invoke(main, args + (extra or []))
        run = Run(result, d / "out.parquet")
        assert result.exit_code == 0, result.output
        return run

    return _run
