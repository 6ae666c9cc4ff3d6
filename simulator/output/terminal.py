"""The terminal summary: what was read, what changes, and the top breaking pairs."""

from __future__ import annotations

from typing import Any

from ..diff import CHANGES

_LABELS = {"break": "break", "newly_allowed": "newly allowed", "still_allowed": "still allowed",
           "still_denied": "still denied", "unresolved": "unresolved"}


def _clean(text: Any) -> str:
    """Cluster and flow strings are untrusted: no terminal escape sequences."""
    return "".join(ch if ch.isprintable() else "?" for ch in str(text))


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def render(summary: dict[str, Any]) -> str:
    inp, fl, cn = summary["inputs"], summary["flows"], summary["connections"]
    lines = []
    cand, base = inp["candidate"], inp["baseline"]
    lines.append(f"Policies: candidate {cand['policies']} NetworkPolicies from "
                 f"{cand['files']} files; baseline: "
                 + (f"{base['policies']} NetworkPolicies from {base['files']} files"
                    if base else "observed verdicts in the flows"))
    for name, pset in (("candidate", cand), ("baseline", base)):
        if pset and pset["ignored"]:
            kinds = ", ".join(f"{_clean(k)} ×{v}" for k, v in pset["ignored"].items())
            lines.append(f"  ignored in {name}: {kinds}")
    skipped = sum(fl["skipped"].values())
    lines.append(f"Flows: {fl['read']:,} read, {skipped:,} skipped, "
                 f"{fl['evaluated']:,} evaluated")
    for reason, n in fl["skipped"].items():
        lines.append(f"  skipped {n:,}: {_clean(reason)}")
    if len(fl["files"]) > 1:
        for f in fl["files"][:20]:
            skipped = ", ".join(f"{_clean(r)} {n:,}" for r, n in f["skipped"].items())
            lines.append(f"  {_clean(f['file'])} ({f['format']}): {f['records']:,} records"
                         + (f"; skipped {skipped}" if skipped else ""))
        if len(fl["files"]) > 20:
            lines.append(f"  … and {len(fl['files']) - 20} more files (see --json)")
    for ex in fl["skipped_examples"]:
        lines.append(f"    e.g. {_clean(ex)}")
    lines.append(f"Connections: {cn['total']:,} distinct "
                 f"({cn['direction_guessed']:,} with direction guessed from ports)")
    for change in CHANGES:
        c = cn["by_change"][change]
        lines.append(f"  {_LABELS[change]:<14} {c['connections']:>9,} connections "
                     f"{c['flows']:>12,} flows {_bytes(c['bytes']):>11}")
    un = summary["unresolved_endpoints"]
    if un["addresses"]:
        lines.append(f"Unresolved endpoints: {un['addresses']:,} addresses look in-cluster "
                     "but match no pod (verdicts not guessed)")
        lines += [f"  {_clean(r['ip'])} ({r['kind']}): {r['flows']:,} flows"
                  for r in un["top"][:5]]
    conflicts = summary["identity_conflicts"]
    if conflicts["pods"]:
        lines.append(f"Identity conflicts: {conflicts['pods']:,} pods named by the flows "
                     "disagree with the cluster snapshot (the flows' identity was used)")
        lines += [f"  {_clean(ex)}" for ex in conflicts["examples"][:5]]
    cal = summary["calibration"]
    if cal["compared"]:
        lines.append(f"Self-calibration: baseline model disagrees with the observed verdict "
                     f"on {cal['disagreements']:,} of {cal['compared']:,} connections")
    for key, title in (("top_breaks", "Top breaking workload pairs:"),
                       ("top_newly_allowed", "Top newly allowed workload pairs:")):
        if summary[key]:
            lines.append(title)
        for b in summary[key]:
            lines.append(f"  {_clean(b['source'])} -> {_clean(b['destination'])} "
                         f"{_clean(b['port'])}: {b['connections']:,} connections, "
                         f"{b['flows']:,} flows, {_bytes(b['bytes'])}")
            lines.append(f"      why: {_clean(b['candidate_reason'])}")
    brk = cn["by_change"]["break"]
    lines.append(f"Verdict: {brk['connections']:,} connections would break "
                 f"({brk['flows']:,} flows)" if brk["connections"] else
                 "Verdict: nothing in the observed traffic would break")
    return "\n".join(lines)
