"""The HTML impact report in a real browser: Debian's headless Chromium driven by
Playwright (the system browser, never a downloaded one). The report opens from disk,
shows the verdict and the break groups, its filters, sorting and pages work, it makes
no request but for itself, logs no error, and markup from a hostile cluster runs nothing.

Without chromium or playwright these tests are skipped, except in CI (CI=true), where
that is a failure: `.ci/run` installs chromium."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reportdata import IMG, SCRIPT, demo_report, hostile_report, synthetic_report

from simulator.report.html import render_html

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-quic", "--no-first-run", "--disable-sync"]


# the filter bar says how many groups match once a filter applied (it is debounced)
FILTERED = "() => document.querySelector('#f-status').textContent.includes('match')"


def chromium_path() -> str | None:
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests must run in CI: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install -e '.[test]')")
    exe = chromium_path()
    if exe is None:
        unavailable("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


class Visit:
    """A page opened on a report file, recording console errors, page errors, dialogs and
    every request the page makes."""

    def __init__(self, browser: Any, path: Path, fragment: str = "") -> None:
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.url = path.resolve().as_uri()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error"
                     else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", self._dialog)
        self.page.goto(self.url + fragment)
        self.page.wait_for_load_state("load")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def visible_groups(self, table: str) -> list[str]:
        return self.page.eval_on_selector_all(
            f"#{table} > tbody.g", "els => els.filter(e => !e.hidden).map(e => e.id)")

    def assert_clean(self) -> None:
        assert self.errors == []
        assert self.dialogs == []
        assert [u.split("#")[0] for u in self.requests] == [self.url]

    def close(self) -> None:
        self.page.context.close()


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_report(tmp_path_factory.mktemp("demo"))


@pytest.fixture
def visit(browser: Any) -> Iterator[Any]:
    opened: list[Visit] = []

    def _open(path: Path, fragment: str = "") -> Visit:
        v = Visit(browser, path, fragment)
        opened.append(v)
        return v

    yield _open
    for v in opened:
        v.close()


def test_demo_report_opens_from_disk(visit, demo_file):
    v = visit(demo_file)
    page = v.page
    headline = ("7 workload pairs would break, carrying 17.7% of observed flows (29 connections)"
                " — partial judgement: 1 warning")
    assert page.locator("h1#headline").inner_text() == headline
    assert "SKIPDATA" in page.locator("#warnings").inner_text()
    assert page.locator("#t-break > tbody.g").count() == 7
    assert v.visible_groups("t-break") == [f"g-B{i}" for i in range(1, 8)]
    assert page.locator("#g-B1").is_visible()
    assert "shop/frontend is isolated for ingress" in page.locator("#g-B1").inner_text()
    # a group's connections open on a click
    conns = page.locator("#g-B1 details.conns table.conn")
    assert not conns.is_visible()
    page.locator("#g-B1 details.conns > summary").click()
    assert conns.is_visible() and conns.locator("tbody tr").count() == 3
    # the break the admin tier decided: its reason, and its fix in that tier
    b6 = page.locator("#g-B6").inner_text()
    assert "(admin tier)" in b6 and "pci-ingress-guardrail" in b6
    page.locator("#fix-B6 > summary").click()
    fix = page.locator("#fix-B6").inner_text()
    assert "Allow ingress rule inserted before rule 2 of AdminNetworkPolicy/" in fix
    assert "cluster-admin" in fix
    # the baseline's break offers the NetworkPolicy way too, with what it would close
    page.locator("#fix-B7-alt > summary").click()
    alt = page.locator("#fix-B7-alt").inner_text()
    assert "a new NetworkPolicy payments/netpol-simulator-fix-b7" in alt
    assert "closes" in alt.lower()
    v.assert_clean()


def test_filters_narrow_the_tables(visit, demo_file):
    v = visit(demo_file)
    page = v.page
    assert page.locator("#filters").is_visible()
    page.fill("#f-q", "coredns")
    page.wait_for_function(FILTERED)
    assert v.visible_groups("t-break") == ["g-B2", "g-B3", "g-B4", "g-B5"]
    assert v.visible_groups("t-opened") == []
    page.fill("#f-q", "")
    page.fill("#f-port", "tcp/9090")
    page.wait_for_function("() => document.querySelectorAll('#t-break > tbody.g:not([hidden])')"
                           ".length === 1")
    assert v.visible_groups("t-break") == ["g-B1"]
    page.fill("#f-port", "")
    page.select_option("#f-change", "newly_allowed")
    page.wait_for_function("() => document.querySelectorAll('#t-break > tbody.g:not([hidden])')"
                           ".length === 0")
    assert v.visible_groups("t-opened") == ["g-N1"]
    assert "Nothing matches" in page.locator("#breaks .pager").inner_text()
    # namespace tokens, as the matrix writes them; the hash keeps the filter
    page.select_option("#f-change", "")
    page.fill("#f-q", "src:shop dst:payments")
    page.wait_for_function("() => location.hash.includes('q=')")
    assert v.visible_groups("t-break") == ["g-B6"]
    page.click("#f-clear")
    assert len(v.visible_groups("t-break")) == 7
    v.assert_clean()


def test_matrix_cells_and_hash_links_filter(visit, demo_file):
    v = visit(demo_file)
    page = v.page
    page.click("#t-matrix a[data-q='src:shop dst:kube-system']")
    assert page.input_value("#f-q") == "src:shop dst:kube-system"
    assert v.visible_groups("t-break") == ["g-B2", "g-B3", "g-B4", "g-B5"]
    assert "q=src%3Ashop%20dst%3Akube-system" in page.evaluate("() => location.hash")
    # a filter in the address opens the page filtered
    w = visit(demo_file, "#q=prometheus&change=break")
    assert w.visible_groups("t-break") == ["g-B1"]
    assert w.page.input_value("#f-q") == "prometheus"
    v.assert_clean()
    w.assert_clean()


def test_sorting_by_column(visit, demo_file):
    v = visit(demo_file)
    page = v.page
    port = "#t-break th:has-text('Port')"
    page.click(port)                                       # numbers: biggest first
    assert v.visible_groups("t-break")[:2] == ["g-B1", "g-B6"]     # TCP/9090, TCP/7070
    assert page.get_attribute(port, "aria-sort") == "descending"
    page.click(port)
    first = v.visible_groups("t-break")[0]
    assert page.locator(f"#{first} td.port").inner_text() == "UDP/53"
    assert page.get_attribute(port, "aria-sort") == "ascending"
    page.click("#t-break th:has-text('Source')")
    labels = page.eval_on_selector_all(
        "#t-break > tbody.g > tr:first-child > td:nth-child(2) b", "els => els.map(e => "
        "e.textContent)")
    assert labels == sorted(labels)
    v.assert_clean()


def test_readable_without_javascript(browser, demo_file):
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(demo_file.resolve().as_uri())
        assert "7 workload pairs would break" in page.locator("h1").inner_text()
        assert page.locator("#t-break > tbody.g:visible").count() == 7
        assert not page.locator("#filters").is_visible()
        page.locator("#fix-B1 > summary").click()
        assert "port: metrics" in page.locator("#fix-B1 .yaml pre").inner_text()
    finally:
        context.close()


def test_hostile_cluster_runs_no_code(visit, tmp_path):
    v = visit(hostile_report(tmp_path))
    page = v.page
    # interact the way a reader would: open everything, filter, follow the matrix
    for summary in page.locator("details > summary").all():
        if summary.is_visible():
            summary.click()
    page.fill("#f-q", SCRIPT)
    page.fill("#f-q", "")
    for link in page.locator("#t-matrix a").all():
        link.click()
    page.wait_for_timeout(200)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 1
    body = page.locator("body").inner_text()
    assert SCRIPT in body
    assert IMG.strip() in body
    v.assert_clean()


def test_large_table_pages(visit, tmp_path):
    path = tmp_path / "large.html"
    path.write_text(render_html(synthetic_report(3000, per_group=1, fixes=False)), encoding="utf-8")
    v = visit(path)
    page = v.page
    assert page.locator("#t-break > tbody.g").count() == 3000
    assert v.visible_groups("t-break") == [f"g-B{i}" for i in range(1, 101)]
    pager = page.locator("#breaks .pager")
    assert "Rows 1–100 of 3,000" in pager.inner_text()
    assert "page 1 of 30" in pager.inner_text()
    pager.locator("button:has-text('Next')").click()
    assert v.visible_groups("t-break")[0] == "g-B101"
    pager.locator("button:has-text('Last')").click()
    assert v.visible_groups("t-break")[-1] == "g-B3000"
    assert len(v.visible_groups("t-break")) == 100
    # filtering narrows the pages: port 1007 is every 500th group from B8
    page.fill("#f-port", "1007")
    page.wait_for_function(FILTERED)
    assert v.visible_groups("t-break") == [f"g-B{i}" for i in range(8, 3001, 500)]
    page.fill("#f-port", "")
    page.fill("#f-q", "team-3/")
    page.wait_for_function("() => document.querySelector('#f-status').textContent"
                           ".includes('75 of')")
    assert len(v.visible_groups("t-break")) == 75
    # a link to a group on another page shows it
    page.click("#f-clear")
    page.evaluate("location.hash = '#g-B2500'")
    page.wait_for_function("() => !document.getElementById('g-B2500').hidden")
    assert "g-B2500" in v.visible_groups("t-break")
    assert "page 25 of 30" in pager.inner_text()
    v.assert_clean()


def test_near_miss_fix_download_and_rollout_order(visit, demo_file, tmp_path):
    import yaml

    v = visit(demo_file)
    page = v.page
    # the DNS break says which rule almost admitted it, and what to change
    closest = page.locator("#g-B2 p.near-miss").inner_text()
    assert ("shop/allow-dns-egress egress rule 0 matches kube-system/coredns on port 53 but "
            "only for TCP: port: 53 without protocol means TCP; add protocol: UDP") in closest
    assert page.locator("#g-B2 p.near-miss code").first.inner_text() == "shop/allow-dns-egress"
    # the fix is downloadable from the page, as the file --fixes-dir writes
    page.locator("#fix-B2 > summary").click()
    button = page.locator("#fix-B2 button.download")
    assert button.is_visible()
    with page.expect_download() as download:
        button.click()
    got = download.value
    assert got.suggested_filename == "02-shop-allow-dns-egress.yaml"
    saved = tmp_path / got.suggested_filename
    got.save_as(saved)
    [doc] = list(yaml.safe_load_all(saved.read_text()))
    assert doc["metadata"] == {"name": "allow-dns-egress", "namespace": "shop",
                               "labels": {"change": "CHG-2290"}}
    assert {"protocol": "UDP", "port": 53} in doc["spec"]["egress"][0]["ports"]
    # rollout readiness: safest first
    rows = page.eval_on_selector_all(
        "#t-rollout tbody tr",
        "els => els.map(e => [e.dataset.status, +e.dataset.breaks, "
        "e.querySelector('th').textContent])")
    rank = {"safe": 0, "ready with fixes": 1, "blocked": 2}
    keys = [(rank[status], breaks) for status, breaks, _ in rows]
    assert keys == sorted(keys)
    assert [name for *_, name in rows] == ["payments", "(cluster-scoped)", "shop"]
    assert v.errors == [] and v.dialogs == []
