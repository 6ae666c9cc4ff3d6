"""`--markdown FILE`: a compact GitHub-flavoured summary for a pull-request comment.

GitHub refuses comments over 65,536 characters; the summary stays under LIMIT whatever
the input by adding groups only while they fit, and says how many it left out."""

from __future__ import annotations

import re
from typing import Any

LIMIT = 60_000
TOP_GROUPS = 25
RESERVE = 4_000  # for the sections after the groups and the closing notes

_SPECIAL = re.compile(r"([\\`*_{}\[\]#+!|~])")
_LABELS = {"break": "break", "newly_allowed": "newly allowed", "still_allowed": "still allowed",
           "still_denied": "still denied", "unresolved": "unresolved"}


def md(text: Any) -> str:
    """Untrusted text as inert Markdown: no markup, no HTML, one line."""
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _SPECIAL.sub(r"\\\1", s)
    return " ".join(s.split())


def fenced(text: str, lang: str = "") -> str:
    """A code block no backtick run inside the text can close."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def _pair(g: dict[str, Any]) -> str:
    port = f"{g['protocol']}/{g['port']}" if g["port"] is not None else g["protocol"]
    via = (" via Service " + ", ".join(md(s) for s in g["services"])
           if g.get("services") else "")
    return f"{md(g['source']['label'])} → {md(g['destination']['label'])} {md(port)}{via}"


def _group_table(groups: list[dict[str, Any]]) -> list[str]:
    lines = ["| | workload pair | connections | flows | why |", "|---|---|--:|--:|---|"]
    lines += [f"| {g['id']} | {_pair(g)} | {g['connections']:,} | {g['flows']:,} | "
              f"{md(g['reason'])} |" for g in groups]
    return lines


def _radius(fix: dict[str, Any]) -> str:
    blast = fix.get("blast_radius")
    if blast is None:
        return "not replayed"
    if blast["connections"]:
        radius = (f"also opens {blast['opens_denied_today']:,} connections denied today and "
                  f"repairs {blast['restores_other_breaks']:,} other breaking connections")
    else:
        radius = "opens nothing else among the observed connections"
    if blast.get("closes"):
        radius += (f"; denies {blast['closes']:,} connections the candidate allows "
                   f"({blast['closes_flows']:,} flows)")
    return radius


def _edited(fix: dict[str, Any]) -> str:
    words = []
    for e in fix["edits"]:
        how = "new" if e.get("new_policy") else (
            "add" if e.get("at") is None else f"{e['action'].capitalize()} before rule {e['at']}")
        words.append(f"{md(e['policy'])} ({e['direction']}, {how})")
    return ", ".join(words) or "nothing"


def _fix_body(fix: dict[str, Any]) -> list[str]:
    parts = [f"Restores {fix['restores']['connections']:,} of {fix['restores']['of']:,} "
             f"connections; blast radius: {_radius(fix)}.", ""]
    parts += [f"- {md(n)}" for n in fix["notes"]]
    if fix.get("problem"):
        parts.append(f"- {md(fix['problem'])}")
    if fix.get("same_as"):
        return parts + [f"The same edit as the fix for {fix['same_as']}.", ""]
    return parts + ["", fenced(fix["yaml"], "yaml"), ""] if fix["yaml"] else parts + [""]


def _fix(g: dict[str, Any]) -> str:
    fix = g["fix"]
    tiers = [t for t in fix.get("tiers") or [] if t != "networkpolicy"]
    in_tier = f" [{', '.join(tiers)} tier]" if tiers else ""
    parts = [f"<details><summary>{g['id']}: fix {_pair(g)} — edit {_edited(fix)}{in_tier}"
             "</summary>", ""]
    parts += _fix_body(fix)
    alt = fix.get("alternative")
    if alt is not None:
        parts += [f"Or, without touching the baseline: {_edited(alt)}.", ""]
        parts += _fix_body(alt)
    parts += ["</details>", ""]
    return "\n".join(parts)


def render_markdown(report: dict[str, Any], limit: int = LIMIT) -> str:
    totals = report["totals"]
    out = [f"### netpol-simulator: {md(report['headline'])}", ""]
    plane = report.get("dataplane")
    if plane:
        how = (f"inferred from {plane['inferred_from']}" if plane["inferred"]
               else "chosen with --cni" if plane["cni"] != "kubernetes" else "the default")
        out += [f"Dataplane modelled: **{md(plane['cni'])}** ({md(plane['title'])}; {how})",
                ""]
    if report.get("warnings"):
        out += ["> [!WARNING]", "> **Not judged** — the verdict covers only part of what was "
                "given:"]
        out += [f"> - {md(w['message'])}" for w in report["warnings"]]
        out.append("")
    out += ["| change | connections | flows |", "|---|--:|--:|"]
    out += [f"| {_LABELS[c]} | {v['connections']:,} | {v['flows']:,} |"
            for c, v in totals["by_change"].items()]
    out.append("")
    budget = limit - RESERVE
    for key, title in (("breaks", "What breaks"), ("newly_allowed", "Newly allowed")):
        section = report[key]
        if not section["total"]:
            continue
        pairs = section["total"]
        out += [f"#### {title} ({pairs:,} workload pair{'s' if pairs != 1 else ''})", ""]
        groups = section["groups"][:TOP_GROUPS]
        table = _group_table(groups)
        while groups and len("\n".join(out + table)) > budget:
            groups = groups[:-1]
            table = _group_table(groups)
        out += table
        if section["total"] > len(groups):
            out.append(f"\n…and {section['total'] - len(groups):,} more (see the HTML report)")
        out.append("")
        if key == "breaks":
            fixes = []
            for g in groups:
                block = _fix(g)
                if len("\n".join(out + fixes)) + len(block) > budget:
                    fixes.append(f"_{len(groups) - len(fixes):,} more fixes in the HTML "
                                 "report_\n")
                    break
                fixes.append(block)
            if fixes:
                out += ["**Suggested fixes**", ""] + fixes
    out += _notes(report)
    text = "\n".join(out) + "\n"
    return text if len(text) <= limit else text[:limit - 40] + "\n\n_(truncated)_\n"


def _notes(report: dict[str, Any]) -> list[str]:
    got, trust = report["gotchas"], report["trust"]
    notes = []
    if got["dns_breaks"]:
        notes.append(f"**DNS breaks** in {len(got['dns_breaks'])} groups "
                     f"({', '.join(got['dns_breaks'][:20])}): allow UDP and TCP 53 to the "
                     "cluster DNS before an egress lock-down.")
    if got["unselected_pods"]:
        n = sum(r["pods"] for r in got["unselected_pods"])
        notes.append(f"{n:,} pods in {len(got['unselected_pods'])} namespaces are selected "
                     "by no candidate policy (open by default).")
    if got["policies_selecting_nothing"]:
        notes.append(f"{len(got['policies_selecting_nothing'])} candidate policies select no "
                     "pod.")
    if got["dead_rules"]["total"]:
        shown = got["dead_rules"]["rules"]
        shadowed = sum(1 for r in shown if r.get("shadowed_by"))
        more = (f" ({shadowed} of the {len(shown)} listed shadowed by an earlier rule or "
                "tier)") if shadowed else ""
        notes.append(f"{got['dead_rules']['total']} candidate rules decided no observed "
                     f"traffic{more}.")
    un = trust["unresolved"]
    if un["connections"]:
        notes.append(f"{un['connections']:,} connections ({un['share_of_flows']:.1%} of flows) "
                     f"have an endpoint that matches no pod ({un['addresses']:,} addresses); "
                     "their verdicts are not guessed.")
    cal = trust["calibration"]
    if cal["compared"]:
        notes.append(f"Self-calibration: the baseline matches the recorded verdicts on "
                     f"{cal['agreement']:.1%} of {cal['compared']:,} connections.")
    if trust["direction_guessed"]["connections"]:
        notes.append(f"{trust['direction_guessed']['connections']:,} connections had their "
                     "direction guessed from ports.")
    return (["#### Notes", ""] + [f"- {n}" for n in notes] + [""]) if notes else []
