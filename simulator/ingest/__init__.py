"""Flow ingest: detect each flow file's format and give, per group of same-shaped files,
the SQL that groups its records into tuples (see sources.TUPLE_COLUMNS)."""

from __future__ import annotations

from .sources import FlowSource, open_flow_sources

__all__ = ["FlowSource", "open_flow_sources"]
