"""The pre-rollout impact report: a model built from the run (model.py), rendered as a
self-contained HTML page, GitHub Markdown and JSON."""

from .model import REPORT_VERSION, build_report

__all__ = ["REPORT_VERSION", "build_report"]
