"""Flow ingest: detect each flow file's format and expose all of them to DuckDB as one
view, `flow_records`, in the pipeline's record shape (see RECORD_COLUMNS)."""

from __future__ import annotations

from .sources import FlowSource, open_flow_sources

__all__ = ["FlowSource", "open_flow_sources"]
