"""Shared test fixtures: run the real CLI on worlds written in the real input formats."""

from __future__ import annotations

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
