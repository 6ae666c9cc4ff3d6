"""The HTML impact report without a browser: what it contains, that it loads nothing from
anywhere, that markup in the inputs stays text, and that it stays small and fast."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from reportdata import HOSTILE, IMG, SCRIPT, demo_report, hostile_report, synthetic_report

from simulator.output.terminal import human_bytes
from simulator.report.html import fmt_bytes, fmt_dt, fmt_pct, render_html


class Page(HTMLParser):
    """Every start tag with its attributes, and the text, as a browser's parser sees them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag]

    @property
    def alltext(self) -> str:
        return "".join(self.text)


def csp_of(page: Page) -> str:
    metas = [m for m in page.all("meta")
             if (m.get("http-equiv") or "").lower() == "content-security-policy"]
    assert len(metas) == 1
    return metas[0]["content"] or ""


def assert_self_contained(html: str) -> None:
    """Nothing is fetched: a CSP that forbids every external load, scripts and styles only
    by the report's nonce, no inline handlers or style attributes, no external URLs."""
    page = Page(html)
    csp = csp_of(page)
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if d.strip())
    assert directives["default-src"] == "'none'"
    nonce = re.fullmatch(r"'nonce-([A-Za-z0-9_-]{16,})'", directives["script-src"])
    assert nonce and directives["style-src"] == directives["script-src"]
    assert set(directives) <= {"default-src", "script-src", "style-src", "img-src",
                               "base-uri", "form-action"}
    assert directives.get("img-src", "data:") == "data:"
    for tag in ("script", "style"):
        for attrs in page.all(tag):
            if tag == "script" and attrs.get("type") == "application/json":
                continue
            assert attrs.get("nonce") == nonce.group(1), (tag, attrs)
    assert len(page.all("script")) == 1 and not page.all("script")[0].get("src")
    for tag, attrs in page.tags:
        assert tag not in ("img", "iframe", "object", "embed", "link", "base", "form") or (
            tag == "link" and (attrs.get("href") or "").startswith("data:")), (tag, attrs)
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            assert name != "style", tag
            if name in ("href", "src", "action", "formaction", "poster", "srcset"):
                assert (value or "").startswith(("#", "data:")), (tag, name, value)
    for url in re.findall(r"(?:src|href|url)\s*[=(]\s*[\"']?\s*(https?:|//)", html, re.I):
        pytest.fail(f"external reference {url!r}")
    assert "@import" not in html


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    import json

    path = demo_report(tmp_path_factory.mktemp("demo"))
    return path.read_text(encoding="utf-8"), json.loads(
        (path.parent / "report.json").read_text())


def test_demo_report_has_every_section(demo):
    html, doc = demo
    page = Page(html)
    text = page.alltext
    report = doc.get("report", doc)
    headline = ("7 workload pairs would break, carrying 17.7% of observed flows (29 connections)"
                " — partial judgement: 1 warning")
    assert headline in text
    # the footer names the schema version the --json document carries
    from simulator.output.jsonout import SCHEMA_VERSION
    assert f"schema version {SCHEMA_VERSION}," in text
    # what was not judged stands right under the headline: the demo's SKIPDATA records
    assert "Not judged" in text and "SKIPDATA record (AWS dropped records) ×2" in text
    assert [a["id"] for a in page.all("section")] == [
        "verdict", "breaks", "fixes", "rollout", "newly-allowed", "gotchas", "trust",
        "matrix"]
    # the verdict: inputs and every change class
    for fragment in ("vpc-parquet", "5,773 records", "2024-06-01 12:00:00 – 2024-06-01 13:00:00",
                     "27 pods, 9 namespaces, 3 nodes, 12 services",
                     "1 AdminNetworkPolicy, 1 BaselineAdminNetworkPolicy, 12 NetworkPolicies "
                     "in 5 files", "v1 ConfigMap (1)",
                     "5 NetworkPolicies in 2 files", "Still denied", "Unresolved"):
        assert fragment in text, fragment
    # what breaks: six groups, busiest first, each with its connections and a fix
    groups = [a for a in page.all("tbody") if a.get("class") == "g"]
    assert [g["id"] for g in groups] == ["g-B1", "g-B2", "g-B3", "g-B4", "g-B5", "g-B6", "g-B7",
                                         "g-N1"]
    assert "shop/frontend is isolated for ingress by shop/frontend-ingress" in text
    assert "frontend-vgvtdj4kwn-4pqkz (10.42.2.5)" in text     # the sample flow
    # the guessed-direction table names workloads beside the addresses
    guessed = html[html.index('id="t-guessed"'):]
    assert "kube-system/Deployment/coredns" in guessed[:guessed.index("</table>")]
    # the DNS break also reached through the kube-dns Service's ClusterIP
    assert "reached through Service kube-system/kube-dns" in text
    assert "monitoring/prometheus-k8s" in text and "StatefulSet · 1 pod" in text
    assert "kind: NetworkPolicy" in text and "port: metrics" in text   # the fix's YAML
    assert "restores 3 of 3 connections" in text
    for g in report["breaks"]["groups"]:                     # every fix and blast radius
        fix, blast = g["fix"], g["fix"]["blast_radius"]
        today = fix["also_opens"]["connections"]
        assert today == blast["opens_denied_today"]
        opens = (f"{today:,} observed connection{'s' if today != 1 else ''} denied today"
                 if today else "nothing else")
        assert f"also opens {opens}" in text, g["id"]
        other = fix["restores"]["other_breaks"]
        assert other == blast["restores_other_breaks"]
        if other:
            assert f"and {other:,} other breaking connection" in text, g["id"]
        for item in blast["items"]:
            assert item["source"] in text and item["destination"] in text
        if fix.get("same_as"):
            assert f'same edit as the fix for <a href="#g-{fix["same_as"]}">' in html
        else:
            assert fix["yaml"].strip().splitlines()[-1].strip() in text
    assert "reporting/ledger-export" in text                 # newly allowed
    # gotchas, trust, matrix
    assert "The candidate breaks DNS" in text
    assert [a["href"] for a in page.all("a") if a.get("href", "").startswith("#g-B")][:1]
    assert "grafana-bs64zqk7tv-5hqb6" in text                # a pod no policy selects
    assert "10.42.1.77" in text and "100.0%" in text         # unresolved, calibration
    assert "NODATA record (no traffic in the window)" in text
    cells = [a for a in page.all("td") if (a.get("class") or "").startswith("st-")]
    states = {c["class"] for c in cells}
    assert {"st-break", "st-newly_allowed", "st-unresolved", "st-unchanged"} <= states
    links = {a.get("data-q"): a["href"] for a in page.all("a") if a.get("data-q")}
    assert links["src:shop dst:kube-system"] == "#g-B2"
    assert links["src:reporting dst:payments"] == "#g-N1"
    assert report["headline"] == headline


def test_demo_report_is_self_contained(demo):
    assert_self_contained(demo[0])


def test_every_report_gets_its_own_nonce():
    from reportdata import demo_report_dict

    a, b = render_html(demo_report_dict()), render_html(demo_report_dict())
    assert csp_of(Page(a)) != csp_of(Page(b))


def test_markup_from_the_cluster_stays_text(tmp_path):
    html = hostile_report(tmp_path).read_text(encoding="utf-8")
    assert_self_contained(html)
    page = Page(html)
    assert not page.all("img")
    assert len(page.all("script")) == 1
    text = page.alltext
    assert SCRIPT in text and IMG in text          # shown literally, as text
    for hostile in HOSTILE:
        assert hostile not in html                 # never as markup
    for tag, attrs in page.tags:
        for name in attrs:
            assert not name.startswith("on") and name != "src", (tag, name)


def test_markup_anywhere_in_the_model_is_escaped():
    """Every string of the model that a page prints, replaced by markup."""
    from reportdata import demo_report_dict

    report = synthetic_report(3, 2, per_group=3)

    def poison(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: (v if k in ("id", "change", "state", "version") else poison(v))
                    for k, v in obj.items()}
        if isinstance(obj, list):
            return [poison(v) for v in obj]
        if isinstance(obj, str):
            return obj + SCRIPT + IMG
        return obj

    evil = poison(report)
    evil["breaks"]["groups"][0]["fix"]["problem"] = IMG
    evil["gotchas"]["dead_rules"] = {"total": 1, "rules": [
        {"policy": SCRIPT, "direction": "ingress", "index": 0, "rule": {"from": [{IMG: SCRIPT}]}}]}
    evil["gotchas"]["policies_selecting_nothing"] = [SCRIPT]
    evil["trust"]["skipped"] = {SCRIPT: 1}
    evil["trust"]["identity_conflicts"] = {"pods": 1, "examples": [IMG]}
    evil["trust"]["calibration"]["examples"] = [{k: IMG for k in (
        "src_ip", "dst_ip", "protocol", "observed", "baseline", "baseline_reason")} | {
        "dst_port": 1}]
    evil["trust"]["calibration"]["compared"] = 5
    evil["trust"]["calibration"]["disagreements"] = 1
    html = render_html(evil)
    assert_self_contained(html)
    page = Page(html)
    assert not page.all("img") and len(page.all("script")) == 1
    assert SCRIPT not in html and IMG not in html
    assert page.alltext.count(SCRIPT) > 50
    assert demo_report_dict()["breaks"]["groups"][0]["id"] == "B1"   # the cache untouched


def test_report_without_baseline_cluster_or_breaks(simulate_world, tmp_path):
    from worldfiles import namespace, pod, vpc_record

    out = tmp_path / "r.html"
    simulate_world([namespace("x"), pod("x", "a", "10.0.1.10"), pod("x", "b", "10.0.1.11")],
                   [], [vpc_record("10.0.1.10", "10.0.1.11", 80)],
                   extra=["--report", str(out)])
    html = out.read_text(encoding="utf-8")
    assert_self_contained(html)
    text = Page(html).alltext
    assert "Nothing in the observed traffic would break" in text
    assert "No fix needed" in text
    assert "the baseline is what the dataplane did" in text


def test_size_stays_bounded():
    # the model's caps: 2,000 groups per change class, 20 connections each (the time it
    # takes is measured by benchmarks/, not here)
    report = synthetic_report(2000, per_group=20)
    html = render_html(report)
    assert len(html.encode()) < 20_000_000
    page_groups = html.count('<tbody class="g"')
    assert page_groups == 2000
    # both classes full, and long names: the page sheds connection rows, not groups
    report = synthetic_report(2000, 2000, per_group=20, name_len=120)
    html = render_html(report)
    assert len(html.encode()) < 20_000_000
    assert html.count('<tbody class="g"') == 4000
    assert "busiest shown; all are in --out" in html


def test_formatting():
    t = datetime(2024, 6, 1, 14, 0, 9, tzinfo=timezone(timedelta(hours=2)))
    assert fmt_dt(t) == "2024-06-01 12:00:09"
    assert fmt_dt(datetime(2024, 6, 1, 12, 0, 9, 500, tzinfo=UTC)) == "2024-06-01 12:00:09"
    assert fmt_dt("2024-06-01 12:00:09+00:00") == "2024-06-01 12:00:09"
    assert fmt_dt(None) == "—"
    # one unit system in every output: the terminal's
    assert fmt_bytes(999) == "999 B" and fmt_bytes(8_157_706) == "7.8 MiB"
    assert fmt_bytes(8_157_706) == human_bytes(8_157_706) and fmt_bytes(None) == "n/a"
    assert fmt_pct(0.0628) == "6.3%" and fmt_pct(0.00001) == "<0.1%" and fmt_pct(0) == "0.0%"


def test_template_files_ship_with_the_package():
    import tomllib

    root = Path(__file__).resolve().parent.parent
    data = tomllib.loads((root / "pyproject.toml").read_text())
    assert "templates/*" in data["tool"]["setuptools"]["package-data"]["simulator"]
    names = {p.name for p in (root / "simulator" / "templates").iterdir()}
    assert {"report.html.j2", "report.css", "report.js"} <= names
