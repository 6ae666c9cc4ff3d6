"""`--json FILE`: the summary and every connection, as one JSON document.

The connections array is written by DuckDB (no Python loop per connection) and spliced
into the document in chunks."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import duckdb

from .. import db
from ..diff import PUBLIC_RESULT

SCHEMA_VERSION = 2  # docs/json-schema.md


def write_json(con: duckdb.DuckDBPyConnection, summary: dict[str, Any],
               path: str | Path, report: dict[str, Any] | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="netpol-json-") as tmp:
        part = Path(tmp) / "connections.json"
        target = str(part).replace("'", "''")
        db.run(con, f"COPY (SELECT * FROM {PUBLIC_RESULT}) TO '{target}' (FORMAT json, ARRAY true)")
        head = json.dumps({"schema_version": SCHEMA_VERSION, "summary": summary,
                           "report": report}, indent=1, default=str)
        with path.open("w", encoding="utf-8") as out:
            out.write(head[:-1].rstrip() + ',\n "connections": ')
            with part.open("r", encoding="utf-8") as src:
                shutil.copyfileobj(src, out, 1 << 20)
            out.write("\n}\n")
