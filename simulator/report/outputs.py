"""Write the report in the formats asked for; the model is built once for all of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..output.files import write_text
from ..output.jsonout import write_json
from ..untrusted import inert_document
from .model import build_report

HTML_SUFFIXES = (".html", ".htm")


def check_report_paths(html: str | None, markdown: str | None) -> None:
    """Refuse names we would write wrongly before the (long) run starts."""
    if html and Path(html).suffix.lower() not in HTML_SUFFIXES:
        raise UsageError(f"--report {html}: the report is one HTML file; use a .html name")
    if markdown and Path(markdown).suffix.lower() in HTML_SUFFIXES:
        raise UsageError(f"--markdown {markdown}: use a .md name (HTML goes to --report)")


def write_reports(result: Any, *, html: str | None = None, markdown: str | None = None,
                  json: str | None = None) -> dict[str, Any]:
    if result.candidate is None:
        raise ValueError("the run carries no candidate policy set")
    report = build_report(result.con, result.summary, result.candidate, result.baseline)
    if html:
        from .html import render_html

        write_text(html, inert_document(render_html(report)))
    if markdown:
        from .markdown import render_markdown

        write_text(markdown, inert_document(render_markdown(report)))
    if json:
        write_json(result.con, result.summary, json, report, work_dir=result.work_dir)
    return report
