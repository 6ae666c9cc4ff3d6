"""The report as plain data: one dict that the HTML, Markdown and JSON outputs render.

Sized by what is shown, not by flows: the biggest groups, a few connections per group,
bounded lists elsewhere; the totals always count everything."""

from __future__ import annotations

from typing import Any

import duckdb

from .. import evaluate
from ..policy.loader import PolicySet
from . import facts, rollout
from .fix_files import fix_files, name_fixes
from .fixes import suggest_fixes
from .groups import build_groups
from .text import RuleNames

REPORT_VERSION = 1
MAX_GROUPS = 2000        # per change class
CONNECTIONS_PER_GROUP = 20


def _headline(summary: dict[str, Any], breaks: dict[str, Any], total_flows: int) -> str:
    brk = summary["connections"]["by_change"]["break"]
    warnings = len(summary.get("warnings") or [])
    partial = (f" — partial judgement: {warnings} warning{'s' if warnings != 1 else ''}"
               if warnings else "")
    plane = summary.get("dataplane") or {}
    if plane and not plane["enforces_policy"]:
        return (f"The candidate changes nothing on the wire: {plane['cni']} enforces no "
                f"network policy{partial}")
    if not brk["connections"]:
        return "Nothing in the observed traffic would break" + partial
    pairs = breaks["total"]
    share = brk["flows"] / total_flows * 100 if total_flows else 0.0
    return (f"{pairs:,} workload pair{'s' if pairs != 1 else ''} would break, carrying "
            f"{share:.1f}% of observed flows ({brk['connections']:,} connection"
            f"{'s' if brk['connections'] != 1 else ''}){partial}")


def build_report(con: duckdb.DuckDBPyConnection, summary: dict[str, Any],
                 candidate: PolicySet, baseline: PolicySet | None, *,
                 max_groups: int = MAX_GROUPS,
                 per_group: int = CONNECTIONS_PER_GROUP) -> dict[str, Any]:
    # first: the fixes' replay below replaces the evaluation tables it reads
    evaluate.ensure_usage(con)
    total_flows = summary["flows"]["evaluated"]
    rules = {"candidate": RuleNames(candidate.policies)}
    if baseline is not None:
        rules["baseline"] = RuleNames(baseline.policies)
    grouped = build_groups(con, limit=max_groups, per_group=per_group,
                           total_flows=total_flows, has_baseline_set=baseline is not None,
                           rules=rules)
    breaks, opened = grouped["break"], grouped["newly_allowed"]
    report = {
        "version": REPORT_VERSION,
        "headline": _headline(summary, breaks, total_flows),
        "warnings": summary.get("warnings") or [],
        "dataplane": summary.get("dataplane"),
        "inputs": {**summary["inputs"], "flows": facts.flow_inputs(con, summary)},
        "totals": {"records": summary["flows"]["read"], "flows": total_flows,
                   "connections": summary["connections"]["total"],
                   "by_change": summary["connections"]["by_change"]},
        "breaks": breaks,
        "newly_allowed": opened,
        "gotchas": {
            "dns_breaks": facts.dns_breaks(breaks["groups"]),
            "unselected_pods": facts.unselected_pods(con),
            # without a snapshot we only know the pods the flows name: every policy whose
            # pods stayed silent would be listed, so the list is left empty
            "policies_selecting_nothing": (facts.policies_selecting_nothing(con)
                                           if summary["inputs"]["cluster"]["pods"] else []),
            "snapshot_pods": summary["inputs"]["cluster"]["pods"],
            "dead_rules": facts.dead_rules(con, candidate),
        },
        "trust": facts.trust(con, summary),
        "matrix": facts.namespace_matrix(con),
    }
    # last: the replay replaces the evaluation tables everything above has read
    combined, invalid = suggest_fixes(con, breaks["groups"], candidate)
    name_fixes(breaks["groups"])
    report["fix_files"] = fix_files(breaks["groups"], combined)
    # the page's Download saves what the file holds: where a policy several fixes edit
    # makes it differ from the fix's own YAML, the policies as every fix leaves them (each
    # carried once by the page)
    report["combined_yaml"] = {}
    for g in breaks["groups"]:
        fix = g.get("fix") or {}
        refs = list(dict.fromkeys(e["policy"] for e in fix.get("edits") or []))
        body = "---\n".join(combined[r] for r in refs if r in combined)
        if fix.get("file") and body and body != fix.get("yaml"):
            fix["file_refs"] = refs
            report["combined_yaml"].update({r: combined[r] for r in refs if r in combined})
    # all the fixes together can pass a limit no single one does: said, not hidden
    report["fix_files_problems"] = invalid
    report["rollout"] = rollout.readiness(report, candidate, baseline)
    for g in breaks["groups"] + opened["groups"]:
        del g["gkey"]
    return report
