"""The terminal summary: what was read, what changes, the top breaking pairs, and the
verdict with everything the run could not judge."""

from __future__ import annotations

from typing import Any

import click

from ..diff import CHANGES
from ..untrusted import inert

_LABELS = {"break": "break", "newly_allowed": "newly allowed", "still_allowed": "still allowed",
           "still_denied": "still denied", "unresolved": "unresolved"}
MAX_FILES = 20


def _clean(text: Any) -> str:
    """Cluster and flow strings are untrusted: no terminal escape sequences."""
    return inert(text)


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def human_bytes(n: int | None) -> str:
    """n/a when the records carried no byte counts (never a misleading 0 B)."""
    if n is None:
        return "n/a"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _verdict(summary: dict[str, Any]) -> list[str]:
    brk = summary["connections"]["by_change"]["break"]
    warnings = summary.get("warnings") or []
    partial = (f" — partial judgement, {plural(len(warnings), 'warning')}:"
               if warnings else "")
    plane = summary.get("dataplane") or {}
    if plane and not plane["enforces_policy"]:
        head = (f"Verdict: the candidate changes nothing on the wire: {plane['cni']} "
                f"enforces no network policy{partial}")
    elif brk["connections"]:
        head = (f"Verdict: {plural(brk['connections'], 'connection')} would break "
                f"({plural(brk['flows'], 'flow')}){partial}")
    else:
        head = f"Verdict: nothing in the observed traffic would break{partial}"
    return [head] + [f"  ! {_clean(w['message'])}" for w in warnings]


def _paint(lines: list[str], summary: dict[str, Any]) -> list[str]:
    """Colour on a terminal: the verdict red when something breaks (green when nothing
    does), what was not judged yellow, the break row red. The text stays the same."""
    breaks = summary["connections"]["by_change"]["break"]["connections"]
    out = []
    for line in lines:
        if line.startswith("Verdict:"):
            line = click.style(line, fg="red" if breaks else "green", bold=True)
        elif line.startswith("  ! "):
            line = click.style(line, fg="yellow")
        elif line.startswith(f"  {_LABELS['break']}") and breaks:
            line = click.style(line, fg="red")
        out.append(line)
    return out


def render(summary: dict[str, Any], color: bool = False) -> str:
    inp, fl, cn = summary["inputs"], summary["flows"], summary["connections"]
    lines = []
    cand, base = inp["candidate"], inp["baseline"]

    def policies(pset: dict[str, Any]) -> str:
        kinds = pset.get("kinds") or {"NetworkPolicy": 0}
        return (", ".join(plural(n, kind, kind[:-1] + "ies" if kind.endswith("y") else
                                 kind + "s") for kind, n in kinds.items())
                + f" from {plural(pset['files'], 'file')}")

    lines.append(f"Policies: candidate {policies(cand)}; baseline: "
                 + (policies(base) if base else "observed verdicts in the flows"))
    plane = summary.get("dataplane")
    if plane:
        how = (f"inferred from {plane['inferred_from']}" if plane["inferred"]
               else "--cni" if plane["cni"] != "kubernetes" else "default, no --cni")
        lines.append(f"Dataplane: {plane['cni']} ({plane['title']}; {how})"
                     + (f"; holds with {plane['requires']}" if plane["requires"] else ""))
        for setting in plane.get("agent_config") or []:
            lines.append(f"  cilium-config: {_clean(setting)}")
    for name, pset in (("candidate", cand), ("baseline", base)):
        if pset and pset["ignored"]:
            kinds = ", ".join(f"{_clean(k)} ×{v}" for k, v in pset["ignored"].items())
            lines.append(f"  ignored in {name}: {kinds}")
        replaced = (pset or {}).get("replaced") or []
        if replaced:
            lines.append(f"  replaced in {name} (given again, the later applies): "
                         + "; ".join(_clean(r) for r in replaced[:5])
                         + (f" and {len(replaced) - 5:,} more" if len(replaced) > 5 else ""))
    skipped = sum(fl["skipped"].values())
    lines.append(f"Flows: {fl['read']:,} read = {fl['evaluated']:,} evaluated + "
                 f"{skipped:,} skipped")
    for reason, n in fl["skipped"].items():
        lines.append(f"  skipped {n:,}: {_clean(reason)}")
    if len(fl["files"]) > 1:
        for f in fl["files"][:MAX_FILES]:
            why = ", ".join(f"{_clean(r)} {n:,}" for r, n in f["skipped"].items())
            lines.append(f"  {_clean(f['file'])} ({f['format']}): {f['records']:,} read, "
                         f"{f['evaluated']:,} evaluated" + (f"; skipped {why}" if why else ""))
        if len(fl["files"]) > MAX_FILES:
            lines.append(f"  … and {len(fl['files']) - MAX_FILES} more files (see --json)")
    for f in inp.get("skipped_files", []):
        lines.append(f"  file skipped: {_clean(f['file'])}: {_clean(f['reason'])}")
    for ex in fl["skipped_examples"]:
        lines.append(f"    e.g. {_clean(ex)}")
    lines.append(f"Connections: {cn['total']:,} distinct "
                 f"({cn['direction_guessed']:,} with direction guessed from ports)")
    for change in CHANGES:
        c = cn["by_change"][change]
        conns = "connection " if c["connections"] == 1 else "connections"
        flows = "flow " if c["flows"] == 1 else "flows"
        lines.append(f"  {_LABELS[change]:<14} {c['connections']:>9,} {conns} "
                     f"{c['flows']:>12,} {flows} "
                     f"{human_bytes(c['bytes']) if c['connections'] else '-':>11}")
    svc = cn.get("services") or {}
    if svc.get("followed") or svc.get("not_followed"):
        lines.append(f"Services: {plural(svc['followed'], 'connection')} followed to their "
                     f"backends; {svc['not_followed']:,} not followed (unresolved)")
    un = summary["unresolved_endpoints"]
    if un["addresses"]:
        lines.append(f"Unresolved endpoints: {plural(un['addresses'], 'address', 'addresses')}"
                     f" {'looks' if un['addresses'] == 1 else 'look'} in-cluster but match"
                     f"{'es' if un['addresses'] == 1 else ''} no pod (verdicts not guessed)")
        lines += [f"  {_clean(r['ip'])} ({r['kind']}): {plural(r['flows'], 'flow')}"
                  for r in un["top"][:5]]
    undecided = {k: v for k, v in summary["connections"].get("undecided", {}).items()
                 if k != "endpoint not resolved"}
    if undecided:
        lines.append("Unresolved verdicts (candidate), by why:")
        for why, u in undecided.items():
            ex = u["examples"][0]
            port = f"/{ex['dst_port']}" if ex["dst_port"] is not None else ""
            lines.append(f"  {why}: {plural(u['connections'], 'connection')}, e.g. "
                         f"{_clean(ex['src_ip'])} -> {_clean(ex['dst_ip'])} "
                         f"{ex['protocol']}{port}")
    conflicts = summary["identity_conflicts"]
    if conflicts["pods"]:
        lines.append(f"Identity conflicts: {plural(conflicts['pods'], 'pod')} named by the "
                     "flows disagree with the cluster snapshot (the flows' identity was used)")
        lines += [f"  {_clean(ex)}" for ex in conflicts["examples"][:5]]
    cal = summary["calibration"]
    if cal["compared"]:
        lines.append(f"Self-calibration: baseline model disagrees with the observed verdict "
                     f"on {cal['disagreements']:,} of {plural(cal['compared'], 'connection')}")
    for key, title in (("top_breaks", "Top breaking workload pairs:"),
                       ("top_newly_allowed", "Top newly allowed workload pairs:")):
        if summary[key]:
            lines.append(title)
        for b in summary[key]:
            lines.append(f"  {_clean(b['source'])} -> {_clean(b['destination'])} "
                         f"{_clean(b['port'])}: {plural(b['connections'], 'connection')}, "
                         f"{plural(b['flows'], 'flow')}, {human_bytes(b['bytes'])}")
            lines.append(f"      why: {_clean(b['candidate_reason'])}")
            if b.get("closest"):
                lines.append(f"      closest: {_clean(b['closest'])}")
    lines += _verdict(summary)
    return "\n".join(_paint(lines, summary) if color else lines)
