"""Run a benchmark child process: wall time from spawn to exit, exit code, output, and
peak RSS from wait4's rusage (exact, no sampling).

Kept free of heavy imports: a child forked from a driver that loaded DuckDB starts with the
driver's pages in its RSS."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def compile_package() -> None:
    """Byte-compile the installed simulator package, as pip does when it installs a wheel.
    An editable install run with PYTHONDONTWRITEBYTECODE=1 (as on our machines) would
    otherwise compile its ~70 modules from source on every run: ~0.13 s of start-up that
    no installed copy pays. compileall writes nothing where the bytecode is current."""
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("simulator")  # finds, does not import
    for where in (spec.submodule_search_locations or []) if spec else []:
        compileall.compile_dir(where, quiet=1)


def simulate_cmd() -> list[str]:
    """The console script if installed, else the module's main() under this Python. The
    one beside this Python comes first: a version manager's shim found on PATH (pyenv's
    runs two shell scripts, ~0.1 s) is not the tool's time."""
    beside = Path(sys.executable).with_name("simulate")
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    exe = shutil.which("simulate")
    if exe:
        return [exe]
    return [sys.executable, "-c", "import sys; from simulator.cli import main; sys.exit(main())"]


def run_child(cmd: list[str], timeout: float | None = None) -> dict[str, Any]:
    """Run cmd; wall time from spawn to exit, and peak RSS from wait4's rusage (exact,
    no sampling; covers the child and any grandchildren it waited for)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if hasattr(os, "wait4"):
        # read pipes in threads so a chatty child cannot block on a full pipe
        import threading

        bufs: dict[str, bytes] = {}

        def drain(name: str, stream: Any) -> None:
            bufs[name] = stream.read()

        threads = [
            threading.Thread(target=drain, args=("out", proc.stdout)),
            threading.Thread(target=drain, args=("err", proc.stderr)),
        ]
        for t in threads:
            t.start()
        timer = None
        if timeout:
            timer = threading.Timer(timeout, proc.kill)
            timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if timer:
            timer.cancel()
        for t in threads:
            t.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        # ru_maxrss is KiB on Linux, bytes on macOS
        scale = 1 if sys.platform == "darwin" else 1024
        rss = usage.ru_maxrss * scale
        out, err = bufs.get("out", b""), bufs.get("err", b"")
    else:  # pragma: no cover - non-POSIX fallback via psutil sampling
        import psutil

        ps = psutil.Process(proc.pid)
        rss = 0
        while proc.poll() is None:
            try:
                rss = max(rss, ps.memory_info().rss)
            except psutil.Error:
                break
            time.sleep(0.01)
        out, err = proc.communicate()
        wall = time.perf_counter() - t0
    return {
        "seconds": wall,
        "rc": proc.returncode,
        "peak_rss": rss,
        "stdout": out.decode(errors="replace"),
        "stderr": err.decode(errors="replace"),
    }
