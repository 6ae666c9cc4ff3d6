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


_CODE_SAFE = re.compile(r"^[A-Za-z0-9._/:{}(), =-]*$")


def md_code(text: Any) -> str:
    """Like md(), but the `quoted` parts of our own sentences (policy fields, labels)
    become code spans when they hold nothing that could escape one."""
    parts = str(text).split("`")
    if len(parts) % 2 == 0:   # unbalanced: no spans at all
        return md(text)
    def plain(p: str) -> str:   # md() trims; the spaces around a span are kept
        return (" " if p[:1].isspace() else "") + md(p) + (" " if p[-1:].isspace() else "")
    return "".join(f"`{p}`" if i % 2 and p and _CODE_SAFE.match(p) else plain(p)
                   for i, p in enumerate(parts)).strip()


def _closest(g: dict[str, Any]) -> str:
    misses = g.get("near_misses") or []
    return f" **Closest rule:** {md_code(misses[0]['detail'])}" if misses else ""


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
              f"{md(g['reason'])}{_closest(g)} |" for g in groups]
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
            f"rule {e['repair_of']}: {md(e.get('words') or 'repair')}" if "repair_of" in e
            else "add" if e.get("at") is None
            else f"{e['action'].capitalize()} before rule {e['at']}")
        words.append(f"{md(e['policy'])} ({e['direction']}, {how})")
    return ", ".join(words) or "nothing"


def _also_opens(fix: dict[str, Any]) -> str:
    also = fix.get("also_opens") or {}
    if not also.get("connections"):
        return ""
    pairs = "; ".join(f"{md(p['source'])} → {md(p['destination'])} {md(p['port'])}"
                      for p in also.get("pairs") or [])
    return (f"**⚠ Also opens {also['connections']:,} observed connection"
            f"{'' if also['connections'] == 1 else 's'} denied today**: {pairs}. ")


def _fix_body(fix: dict[str, Any]) -> list[str]:
    other = (fix["restores"].get("other_breaks") or 0)
    parts = [f"{_also_opens(fix)}Restores {fix['restores']['connections']:,} of "
             f"{fix['restores']['of']:,} connections"
             + (f" (and {other:,} other breaking connection{'' if other == 1 else 's'})"
                if other else "")
             + f"; blast radius: {_radius(fix)}.", ""]
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
    misses = g.get("near_misses") or []
    if misses:
        parts += ["Rules that almost admit it, the smallest change first:", ""]
        parts += [f"- {md_code(m['detail'])}" for m in misses] + [""]
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
    out += _rollout(report.get("rollout") or {})
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
                    fixes.append(f"_{_n(len(groups) - len(fixes), 'more fix', 'more fixes')}"
                                 " in the HTML report_\n")
                    break
                fixes.append(block)
            if fixes:
                out += ["**Suggested fixes**", ""] + fixes
    out += _notes(report)
    text = "\n".join(out) + "\n"
    return text if len(text) <= limit else text[:limit - 40] + "\n\n_(truncated)_\n"


ROLLOUT_ROWS = 30


def _rollout(ro: dict[str, Any]) -> list[str]:
    """The namespaces in rollout order, safest first (as the HTML report's view)."""
    rows = ro.get("namespaces") or []
    if not rows:
        return []
    out = ["#### Rollout readiness (by namespace, safest first)", "",
           "| # | namespace | status | policies +/~/− | breaks | connections | fixes |",
           "|--:|---|---|---|--:|--:|---|"]
    for i, n in enumerate(rows[:ROLLOUT_ROWS], 1):
        p, b = n["policies"], n["breaks"]
        fixes = " ".join(n["fixes"]) + (f" no fix: {' '.join(n['unfixed'])}"
                                        if n["unfixed"] else "")
        out.append(f"| {i} | {md(n['namespace'])} | {n['status']} | {p['added']}/"
                   f"{p['changed']}/{p['removed']} | {b['groups']:,} | {b['connections']:,} | "
                   f"{fixes.strip() or '—'} |")
    if len(rows) > ROLLOUT_ROWS:
        out.append(f"\n…and {len(rows) - ROLLOUT_ROWS:,} more namespaces (see the HTML "
                   "report)")
    return out + [""]


def _n(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def _notes(report: dict[str, Any]) -> list[str]:
    got, trust = report["gotchas"], report["trust"]
    notes = []
    if got["dns_breaks"]:
        notes.append(f"**DNS breaks** in {_n(len(got['dns_breaks']), 'group')} "
                     f"({', '.join(got['dns_breaks'][:20])}): allow UDP and TCP 53 to the "
                     "cluster DNS before an egress lock-down.")
    if got["unselected_pods"]:
        n = sum(r["pods"] for r in got["unselected_pods"])
        notes.append(f"{_n(n, 'pod')} in {_n(len(got['unselected_pods']), 'namespace')} "
                     f"{'is' if n == 1 else 'are'} selected by no candidate policy (open by "
                     "default).")
    if got["policies_selecting_nothing"]:
        k = len(got["policies_selecting_nothing"])
        notes.append(f"{_n(k, 'candidate policy', 'candidate policies')} "
                     f"select{'s' if k == 1 else ''} no pod.")
    if got["dead_rules"]["total"]:
        shown = got["dead_rules"]["rules"]
        shadowed = sum(1 for r in shown if r.get("shadowed_by"))
        more = (f" ({shadowed} of the {len(shown)} listed shadowed by an earlier rule or "
                "tier)") if shadowed else ""
        notes.append(f"{_n(got['dead_rules']['total'], 'candidate rule')} decided no "
                     f"observed traffic{more}.")
    un = trust["unresolved"]
    if un["connections"]:
        notes.append(f"{_n(un['connections'], 'connection')} ({un['share_of_flows']:.1%} of "
                     f"flows) {'has' if un['connections'] == 1 else 'have'} an endpoint that "
                     f"matches no pod ({_n(un['addresses'], 'address', 'addresses')}); "
                     "their verdicts are not guessed.")
    cal = trust["calibration"]
    if cal["compared"]:
        notes.append(f"Self-calibration: the baseline matches the recorded verdicts on "
                     f"{cal['agreement']:.1%} of {_n(cal['compared'], 'connection')}.")
    if trust["direction_guessed"]["connections"]:
        k = trust["direction_guessed"]["connections"]
        notes.append(f"{_n(k, 'connection')} had {'its' if k == 1 else 'their'} direction "
                     "guessed from ports.")
    return (["#### Notes", ""] + [f"- {n}" for n in notes] + [""]) if notes else []
