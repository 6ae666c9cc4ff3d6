"""`--fixes-dir DIR`: every suggested fix as a manifest file to apply (NN-<namespace>-
<name>.yaml, in the report's order), and all.yaml with every fix together (a policy
several fixes edit appears once, with all their edits)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..output.files import write_text
from ..untrusted import inert

ALL = "all.yaml"
OURS = re.compile(r"^\d{2,}-[a-z0-9.-]+\.yaml$")


def _part(text: Any, limit: int = 60) -> str:
    return re.sub(r"[^a-z0-9.-]+", "-", str(text).lower()).strip("-.")[:limit] or "x"


def _comment(text: str) -> str:
    """One YAML comment line of untrusted words (no line break can end it)."""
    return "# " + " ".join(inert(text).split())


def name_fixes(groups: list[dict[str, Any]]) -> None:
    """Give every distinct fix its file name (`fix.file`): NN-<namespace>-<name>.yaml
    after the first policy it edits, numbered in the report's order; a fix that is the
    same as an earlier one's gets that one's name."""
    n = 0
    by_id: dict[str, str] = {}
    # numbers as wide as the biggest, so that the names sort in the report's order
    width = max(2, len(str(sum(1 for g in groups if (g.get("fix") or {}).get("yaml")))))
    for g in groups:
        fix = g.get("fix") or {}
        if not fix.get("yaml"):
            continue
        if fix.get("same_as") in by_id:
            fix["file"] = by_id[fix["same_as"]]
            continue
        n += 1
        first = (fix.get("edits") or [{}])[0]
        name = str(first.get("policy") or "fix").rpartition("/")[2]
        ns = first.get("namespace") or "cluster"
        fix["file"] = by_id[g["id"]] = f"{n:0{width}d}-{_part(ns)}-{_part(name)}.yaml"


def fix_files(groups: list[dict[str, Any]],
              combined: dict[str, str]) -> list[dict[str, str]]:
    """[{name, yaml}] per distinct fix, then all.yaml; nothing when nothing breaks. A
    policy several fixes edit is one object: each of their files holds it with all their
    edits (so any of the files, applied in any order, leaves it whole), and says so."""
    fixes = [(g, g["fix"]) for g in groups
             if (g.get("fix") or {}).get("file") and not g["fix"].get("same_as")]
    touched: dict[str, list[str]] = {}
    for _, fix in fixes:
        for ref in dict.fromkeys(e["policy"] for e in fix.get("edits") or []):
            touched.setdefault(ref, []).append(fix["file"])
    out: list[dict[str, str]] = []
    for g, fix in fixes:
        restores = fix.get("restores") or {}
        opens = (fix.get("also_opens") or {}).get("connections") or 0
        head = [_comment(f"netpol-simulator fix for {g['id']}: {g['source']['label']} -> "
                         f"{g['destination']['label']} {g['protocol']}"
                         + (f"/{g['port']}" if g.get("port") is not None else "")),
                _comment(f"restores {restores.get('connections', 0)} of "
                         f"{restores.get('of', 0)} connections; also opens {opens} "
                         "observed connections denied today")]
        refs = list(dict.fromkeys(e["policy"] for e in fix.get("edits") or []))
        for ref in refs:
            others = [f for f in touched.get(ref, []) if f != fix["file"]]
            if others:
                head.append(_comment(f"{ref} also carries the edits of {', '.join(others)} "
                                     "(one object holds them all)"))
        body = "---\n".join(combined[r] for r in refs if r in combined)
        out.append({"name": fix["file"], "yaml": "\n".join(head) + "\n"
                    + (body or fix["yaml"])})
    if out and combined:
        out.append({"name": ALL, "yaml": _comment(
            f"netpol-simulator: all {len(out)} suggested fixes together; apply after the "
            "candidate set") + "\n" + "---\n".join(combined.values())})
    return out


def check_fixes_dir(raw: str | None, inputs: Iterable[Path]) -> None:
    """Refuse a fixes directory that is a file or holds an input (never overwritten)."""
    if raw is None:
        return
    if not raw.strip():
        raise UsageError("--fixes-dir: an empty path; name a directory")
    path = Path(raw)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--fixes-dir {raw}: is not a directory")
    real = os.path.realpath(path)
    for f in inputs:
        if os.path.realpath(f).startswith(real.rstrip(os.sep) + os.sep):
            raise UsageError(f"--fixes-dir {raw}: holds the input file {f}; the inputs are "
                             "never overwritten (write the fixes elsewhere)")


def _ours(path: Path) -> bool:
    """A file an earlier run wrote (its first line says so); anything else is the user's."""
    try:
        with path.open("rb") as f:
            return f.readline(64).startswith(b"# netpol-simulator")
    except OSError:
        return False


def write_fixes_dir(raw: str, report: dict[str, Any]) -> int:
    """Write the files; earlier runs' fix files (NN-*.yaml, all.yaml whose first line is
    ours) that this run does not write again are removed, so the directory holds one
    run's fixes. Returns how many
    fixes were written."""
    path = Path(raw)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--fixes-dir {raw}: cannot create it: {e.strerror or e}") from None
    files = [(f["name"], f["yaml"]) for f in report.get("fix_files") or []]
    names = {n for n, _ in files}
    for old in path.iterdir():
        if (old.is_file() and (OURS.match(old.name) or old.name == ALL)
                and old.name not in names and _ours(old)):
            old.unlink()
    for name, text in files:
        write_text(path / name, text)
    return sum(n != ALL for n in names)
