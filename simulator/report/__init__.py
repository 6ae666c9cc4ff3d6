"""The pre-rollout impact report: a model built from the run (model.py), rendered as a
self-contained HTML page, GitHub Markdown and JSON."""

from typing import Any

__all__ = ["REPORT_VERSION", "build_report"]


def __getattr__(name: str) -> Any:
    # The model is imported on first use, not with the package: the CLI imports a light
    # submodule (fix_files) before it forks the manifest readers, and the model's imports
    # (DuckDB, Arrow) would hold that fork up by a quarter of a second.
    if name in __all__:
        from . import model

        return getattr(model, name)
    raise AttributeError(name)
