"""The report as one self-contained HTML page.

Rendered with jinja2 (autoescape on) from `simulator/templates/report.html.j2`; the page's
CSS and JavaScript live beside the template and are inlined at render time under a
Content-Security-Policy that allows nothing but them (a fresh nonce per report). Every
string from the flows, the cluster or the policies reaches the page through autoescape
only; the script reads data from the page's attributes and writes with textContent."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import yaml
from markupsafe import Markup

from ..output.jsonout import SCHEMA_VERSION
from ..output.terminal import human_bytes

_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)   # libyaml when built with it
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

CHANGE_LABELS = {
    "break": "Break",
    "newly_allowed": "Newly allowed",
    "still_allowed": "Still allowed",
    "still_denied": "Still denied",
    "unresolved": "Unresolved",
}
KIND_KEYS = {"external": "(external)", "node": "(node)", "unresolved": "(unresolved)",
             "service": "(service)"}
MAX_FILES_LISTED = 8
MAX_REFS = 6             # policies / rules named per direction in a group's verdict line
# The page stays under 20 MB whatever the model holds (2,000 groups per change class, 20
# connections each, names up to 253 characters, policies of any size): the fixes' YAML is
# left out past YAML_BUDGET (it is in --json), and the connection tables show fewer rows
# (the busiest; all are in --out) when the groups would not fit PAGE_BUDGET otherwise. The
# rest of the page (summary, gotchas, trust, matrix) is bounded by the model's list limits.
PAGE_BUDGET = 16_000_000
YAML_BUDGET = 3_000_000
GROUP_OVERHEAD = 1_700     # a group's markup besides its strings


def fmt_int(n: Any) -> str:
    if n is None:
        return "—"
    try:
        return f"{int(n):,}"
    except (TypeError, ValueError):
        return str(n)


def fmt_bytes(n: Any) -> str:
    """The same units as the terminal's (KiB, MiB, ...); n/a without byte counts."""
    return human_bytes(None if n is None else int(n))


def fmt_pct(share: Any) -> str:
    if share is None:
        return "—"
    pct = float(share) * 100
    if 0 < pct < 0.1:
        return "<0.1%"
    return f"{pct:.1f}%"


def fmt_dt(value: Any) -> str:
    """A timestamp in UTC, to the second; the model hands datetimes (strings pass through)."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.isoformat(sep=" ", timespec="seconds")[:19]
    text = str(value)
    return text[:-6] if text.endswith("+00:00") else text


def fmt_span(first: Any, last: Any) -> str:
    """first – last, the date said once when both fall on the same day."""
    a, b = fmt_dt(first), fmt_dt(last)
    if a == b:
        return a
    if len(a) == len(b) == 19 and a[:11] == b[:11]:
        return f"{a} – {b[11:]}"
    return f"{a} – {b}"


def fmt_yaml(obj: Any) -> str:
    if obj is None:
        return "(rule not found in the manifest)"
    return yaml.dump(obj, Dumper=_DUMPER, sort_keys=False, default_flow_style=False,
                     allow_unicode=True).rstrip("\n")


def port_label(protocol: Any, port: Any) -> str:
    proto = protocol or "?"
    return f"{proto}/{port}" if port is not None else str(proto)


def _files_label(files: Any) -> tuple[list[str], int]:
    """The first few of a list of files, and how many more there are."""
    if isinstance(files, int):
        return [], files
    items = [str(f) for f in (files or [])]
    return items[:MAX_FILES_LISTED], max(0, len(items) - MAX_FILES_LISTED)


class _BytecodeCache(jinja2.FileSystemBytecodeCache):
    """The report template compiled once per version, not once per run (compiling it took
    ~0.3 s of a report's 1-2 s). Jinja's own per-user directory (private, owner-checked);
    a cache that cannot be written costs the compile, never the report."""

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    try:
        return _BytecodeCache()
    except (OSError, RuntimeError):  # no private directory to be had
        return None


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        bytecode_cache=_bytecode_cache(),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # of: a count with its noun in the right number ("1 pod", "2 pods")
    env.filters.update(int=fmt_int, bytes=fmt_bytes, pct=fmt_pct, dt=fmt_dt,
                       yaml=fmt_yaml, of=_plural)
    # the one piece of markup handed to the template: the cell separator of the rows that
    # `join` writes (join escapes each cell itself)
    env.globals.update(TD=Markup("<td>"), port_label=port_label, change_labels=CHANGE_LABELS,
                       files_label=_files_label)
    return env


@cache
def _asset(name: str) -> str:
    text = (TEMPLATES / name).read_text(encoding="utf-8")
    # our own files; they must not be able to close the element they are inlined in
    if "</" in text:
        raise ValueError(f"{name} must not contain '</'")
    return text


def _side_key(side: dict[str, Any], namespaces: set[str]) -> str:
    """The matrix row/column a group's side falls in."""
    if side.get("kind") == "pod":
        key = side.get("namespace") or "?"
    else:
        key = KIND_KEYS.get(side.get("kind") or "", f"({side.get('kind')})")
    return key if key in namespaces or not namespaces else "(other)"


def _endpoint(pod: Any, ip: Any) -> str:
    return f"{pod} ({ip})" if pod else str(ip or "—")


def _connection_rows(g: dict[str, Any]) -> dict[str, Any]:
    """A group's connections as the cells the template prints, formatted once here. What
    every row shares (the day, the direction, the observed verdict) is said once."""
    rows = g.get("connection_rows") or []
    firsts = [fmt_dt(c.get("first_seen")) for c in rows]
    lasts = [fmt_dt(c.get("last_seen")) for c in rows]
    days = {t[:10] for t in firsts + lasts if len(t) == 19}
    one_day = len(days) == 1 and all(len(t) == 19 for t in firsts + lasts)
    directions = [(c.get("direction") or "") + (" (guessed)" if c.get("direction_guessed")
                                                else "") for c in rows]
    observed = [c.get("observed") or "" for c in rows]
    same_dir, same_obs = len(set(directions)) == 1, len(set(observed)) == 1
    cols = ["Source", "Destination", "Flows", "Bytes",
            f"Seen (UTC, {next(iter(days))})" if one_day else "Seen (UTC)"]
    if not same_dir:
        cols.append("Direction")
    if not same_obs:
        cols.append("Observed")
    out = []
    for c, first, last, direction, obs in zip(rows, firsts, lasts, directions, observed,
                                              strict=True):
        if one_day:
            seen = first[11:] if first == last else f"{first[11:]} – {last[11:]}"
        else:
            seen = fmt_span(first, last)
        row = [_endpoint(c.get("src_pod"), c.get("src_ip")),
               _endpoint(c.get("dst_pod"), c.get("dst_ip")),
               fmt_int(c.get("flows")), fmt_bytes(c.get("bytes")), seen]
        if not same_dir:
            row.append(direction)
        if not same_obs:
            row.append(obs)
        out.append(row)
    common = []
    if rows and same_dir and directions[0]:
        common.append(f"direction: {directions[0]}")
    if rows and same_obs and observed[0]:
        common.append(f"observed: {observed[0]}")
    return {"cols": cols, "rows": out, "common": "; ".join(common)}


def _matrix_view(report: dict[str, Any], keys: dict[str, tuple[str, str]]) -> dict[str, Any]:
    matrix = report.get("matrix") or {"namespaces": [], "cells": []}
    names = list(matrix.get("namespaces") or [])
    first_group: dict[tuple[str, str, str], str] = {}
    group_count: dict[tuple[str, str, str], int] = {}
    for section in ("breaks", "newly_allowed"):
        for g in (report.get(section) or {}).get("groups") or []:
            k = (*keys[g["id"]], g["change"])
            first_group.setdefault(k, g["id"])
            group_count[k] = group_count.get(k, 0) + 1
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for c in matrix.get("cells") or []:
        src, dst, state = c["source"], c["destination"], c["state"]
        counts = c.get("counts") or {}
        tiers = c.get("break_tiers") or {}
        decided = (" (decided in the " + ", ".join(
            f"{TIER_NAMES.get(t, t)} tier: {n:,}" for t, n in sorted(tiers.items())) + ")"
            if tiers else "")
        title = ", ".join(f"{CHANGE_LABELS.get(k, k).lower()}: {v:,}"
                          + (decided if k == "break" else "")
                          for k, v in counts.items() if v)
        cell = {"state": state, "count": counts.get(state, sum(counts.values())),
                "title": f"{src} → {dst}: {title or 'no connections'}", "href": None,
                "q": f"src:{src} dst:{dst}", "change": None, "groups": 0}
        if state in ("break", "newly_allowed"):
            gid = first_group.get((src, dst, state))
            cell["groups"] = group_count.get((src, dst, state), 0)
            cell["change"] = state
            cell["href"] = f"#g-{gid}" if gid else ("#breaks" if state == "break"
                                                     else "#newly-allowed")
        elif state == "unresolved":
            cell["href"] = "#trust"
        cells[(src, dst)] = cell
    rows = [n for n in names if any((n, d) in cells for d in names)]
    cols = [n for n in names if any((s, n) in cells for s in names)]
    return {"rows": rows, "cols": cols, "cells": cells}


def _plural(n: Any, word: str, plural: str | None = None) -> str:
    return f"{fmt_int(n)} {word if n == 1 else (plural or word + 's')}"


def _side_sub(side: dict[str, Any]) -> str:
    if side.get("kind") == "pod":
        if not side.get("pods"):  # known by labels only (Hubble, Calico aggregates)
            return "pod, name not recorded"
        return f"{side.get('owner_kind') or 'Pod'} · {_plural(side.get('pods'), 'pod')}"
    return _plural(side.get("addresses"), "address", "addresses")


def _refs(refs: Any) -> str:
    refs = list(refs or [])
    if len(refs) > MAX_REFS:
        return ", ".join(refs[:MAX_REFS]) + f" and {len(refs) - MAX_REFS:,} more"
    return ", ".join(refs)


TIER_WORDS = {"admin": "admin tier", "baseline": "baseline tier"}
TIER_NAMES = {"admin": "admin", "networkpolicy": "NetworkPolicy", "baseline": "baseline"}


def _verdicts(g: dict[str, Any]) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """Per set and direction: the verdict and what decided it (the deciding rules of a
    first-match tier, or the NetworkPolicies that isolate and admit)."""
    out = []
    for pset in ("candidate", "baseline"):
        per = (g.get("verdicts") or {}).get(pset) or {}
        dirs = []
        for d in ("egress", "ingress"):
            v = per.get(d) or {}
            tier = v.get("tier")
            if tier in TIER_WORDS:
                detail = f"{TIER_WORDS[tier]}: {_refs(v.get('decided_by_labels'))}"
            elif v.get("isolated_by"):
                detail = f"isolated by {_refs(v.get('isolated_by'))}"
                if v.get("allowed_by"):
                    detail += f"; admitted by {_refs(v.get('allowed_by'))}"
            else:
                detail = ""
            dirs.append((d, v.get("verdict") or "unknown", detail))
        out.append((pset.capitalize(), dirs))
    return out


def _edit_words(e: dict[str, Any]) -> str:
    """'an egress rule added to shop/x', 'an ingress Allow rule inserted before rule 2 of
    AdminNetworkPolicy/y', 'a new NetworkPolicy payments/z'."""
    if e.get("new_policy"):
        return f"a new NetworkPolicy {e.get('policy')} ({e.get('direction')})"
    if "repair_of" in e:
        return (f"{e.get('direction')} rule {e['repair_of']} of {e.get('policy')} repaired: "
                f"{e.get('words') or 'the near miss mended'}")
    at = e.get("at")
    where = "added to" if at is None else f"inserted before rule {at} of"
    action = "" if e.get("tier") == "networkpolicy" else (
        "Pass " if e.get("action") == "pass" else "Allow ")
    a = "an" if (action or e.get("direction", "e"))[0].lower() in "aeiou" else "a"
    return f"{a} {action}{e.get('direction')} rule {where} {e.get('policy')}"


def _fix_view(fix: dict[str, Any] | None) -> dict[str, Any] | None:
    """The sentences around a fix: what it edits, what it restores, what else it opens
    and closes; the same for its alternative."""
    if fix is None:
        return None
    size = len(fix.get("yaml") or "") + sum(len(str(e.get("rule"))) for e in fix.get("edits") or [])
    if fix.get("same_as"):
        size = 0                                   # printed once, with the first group
    words = [_edit_words(e) for e in fix.get("edits") or []]
    alternative = _fix_view(fix.get("alternative"))
    if alternative is not None:
        size += alternative["yaml_size"]
    if fix.get("problem") and not words:
        return {"summary": "no fix found", "blast": "", "opens": "", "widens": 0, "items": [],
                "yaml_size": size, "edit_words": words, "alternative": alternative}
    b = fix.get("blast_radius") or {}
    rs = fix.get("restores") or {}
    other = rs.get("other_breaks") or 0
    restores = (f"restores {fmt_int(rs.get('connections'))} of "
                f"{_plural(rs.get('of'), 'connection')}"
                + (f" and {fmt_int(other)} other breaking connection{'' if other == 1 else 's'}"
                   if other else ""))
    # what it admits that the candidate denies and that is no break: marked
    today = int(b.get("opens_denied_today") or 0)
    opens = (f"{_plural(today, 'observed connection')} denied today" if today
             else "nothing else")
    closes = ""
    if b.get("closes"):
        closes = (f"; and it denies {_plural(b.get('closes'), 'connection')} "
                  f"({fmt_int(b.get('closes_flows'))} flows) the candidate allows")
    blast = (f"replaying the observed traffic with this fix applied, it {restores} and also "
             f"opens {opens}{closes}.") if b else ""
    same = f" (the same edit as {fix['same_as']})" if fix.get("same_as") else ""
    tiers = [t for t in fix.get("tiers") or [] if t != "networkpolicy"]
    in_tier = f" [{', '.join(tiers)} tier]" if tiers else ""
    return {"summary": f"{', '.join(words)}{in_tier}{same} — {restores}; also opens {opens}"
                       + (f"; closes {fmt_int(b.get('closes'))}" if b.get("closes") else ""),
            "blast": blast, "opens": opens + closes, "widens": today,
            "items": b.get("items") or [], "yaml_size": size, "edit_words": words,
            "alternative": alternative}


def _group_view(g: dict[str, Any], src: str, dst: str) -> dict[str, Any]:
    """Everything the page prints of a group, as plain strings (escaped by the template)."""
    sample = g.get("sample") or {}
    conns = g.get("connections") or 0
    port = g.get("port")
    return {
        "id": g["id"], "change": g.get("change"), "src": src, "dst": dst,
        "port": "" if port is None else str(port), "proto": g.get("protocol") or "",
        "conns": conns, "flows": g.get("flows") or 0, "bytes": g.get("bytes") or 0,
        "src_label": (g.get("source") or {}).get("label"),
        "dst_label": (g.get("destination") or {}).get("label"),
        "src_sub": _side_sub(g.get("source") or {}),
        "dst_sub": _side_sub(g.get("destination") or {}),
        "port_label": port_label(g.get("protocol"), port),
        "conns_text": fmt_int(conns), "flows_text": fmt_int(g.get("flows")),
        "share": fmt_pct(g.get("share_of_flows")), "bytes_text": fmt_bytes(g.get("bytes")),
        "first": fmt_dt(g.get("first_seen")), "last": fmt_dt(g.get("last_seen")),
        "reason": g.get("reason") or "",
        "sample_src": _endpoint(sample.get("src_pod"), sample.get("src_ip")),
        "sample_dst": _endpoint(sample.get("dst_pod"), sample.get("dst_ip")),
        "sample_port": port_label(sample.get("protocol"), sample.get("port")),
        "sample_flows": fmt_int(sample.get("flows")),
        "sample_guessed": bool(sample.get("direction_guessed")),
        "services": ", ".join(g.get("services") or []),
        "verdicts": _verdicts(g),
        "table": _connection_rows(g),
        "fix": _fix_view(g.get("fix")),
    }


def _row_size(row: list[str]) -> int:
    return sum(len(c) for c in row) + 4 * len(row) + 6


def _group_size(v: dict[str, Any]) -> int:
    """About what a group costs on the page besides its connection rows and YAML."""
    text = sum(len(x) for x in v.values() if isinstance(x, str))
    refs = sum(len(detail) for _, dirs in v["verdicts"] for _, _, detail in dirs)
    items = sum(len(str(i)) for i in (v["fix"] or {}).get("items") or [])
    return GROUP_OVERHEAD + text + refs + items


def _fit_budget(views: list[dict[str, Any]]) -> None:
    """Keep the page under PAGE_BUDGET: fixes' YAML up to YAML_BUDGET (busiest groups
    first), then as many connection rows per group as the rest allows (at least one)."""
    spent = 0
    for v in views:
        fix = v["fix"]
        if fix is not None:
            spent += fix["yaml_size"]
            fix["yaml_omitted"] = spent > YAML_BUDGET
            if fix["yaml_omitted"]:
                spent -= fix["yaml_size"]
            if fix["alternative"] is not None:
                fix["alternative"]["yaml_omitted"] = fix["yaml_omitted"]
    row_budget = PAGE_BUDGET - spent - sum(_group_size(v) for v in views)
    sizes = [[_row_size(r) for r in v["table"]["rows"]] for v in views]
    if sum(map(sum, sizes)) > row_budget:
        cap = max((len(s) for s in sizes), default=0)
        while cap > 1 and sum(sum(s[:cap]) for s in sizes) > row_budget:
            cap -= 1
        for v in views:
            v["table"]["rows"] = v["table"]["rows"][:cap]
    for v in views:
        shown, conns = len(v["table"]["rows"]), v["conns"]
        v["conns_summary"] = _plural(conns, "connection") + (
            f" (the {shown:,} busiest shown; all are in --out)" if shown < conns else "")


def render_html(report: dict[str, Any]) -> str:
    """The impact report as one HTML document (a str), with no external references."""
    nonce = secrets.token_urlsafe(18)
    matrix_names = set((report.get("matrix") or {}).get("namespaces") or [])
    keys: dict[str, tuple[str, str]] = {}
    views: dict[str, dict[str, Any]] = {}
    for section in ("breaks", "newly_allowed"):
        for g in (report.get(section) or {}).get("groups") or []:
            src = _side_key(g["source"], matrix_names)
            dst = _side_key(g["destination"], matrix_names)
            keys[g["id"]] = (src, dst)
            views[g["id"]] = _group_view(g, src, dst)
    _fit_budget(list(views.values()))
    template = _environment().get_template("report.html.j2")
    return template.render(
        r=report,
        nonce=nonce,
        css=Markup(_asset("report.css")),
        js=Markup(_asset("report.js")),
        views=views,
        matrix=_matrix_view(report, keys),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        schema_version=SCHEMA_VERSION,   # the --json document's, which holds the same
    )
