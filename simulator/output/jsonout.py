"""`--json FILE`: the summary and every connection, as one JSON document.

The connections array is written by DuckDB (no Python loop per connection) and spliced
into the document in chunks. Every string is ASCII-escaped or, for what DuckDB writes,
has its control and bidi characters escaped (jsonsafe)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import duckdb

from .. import db
from ..diff import PUBLIC_RESULT
from .files import atomic_output
from .jsonsafe import escape_json_file, json_default, json_rows_sql

SCHEMA_VERSION = 3  # docs/json-schema.md


def write_json(con: duckdb.DuckDBPyConnection, summary: dict[str, Any],
               path: str | Path, report: dict[str, Any] | None = None,
               work_dir: str | None = None) -> None:
    """work_dir: where the connections are written before they are spliced in (the run's
    own temporary directory, in --temp-dir when given)."""
    with atomic_output(path) as target:
        fd, name = tempfile.mkstemp(prefix="connections-", suffix=".json", dir=work_dir)
        os.close(fd)
        part = Path(name)
        try:
            quoted = str(part).replace("'", "''")
            db.run(con, f"COPY ({json_rows_sql(PUBLIC_RESULT)}) TO '{quoted}' "
                        "(FORMAT json, ARRAY true)")
            escape_json_file(part)
            head = json.dumps({"schema_version": SCHEMA_VERSION, "summary": summary,
                               "warnings": summary.get("warnings", []), "report": report},
                              indent=1, default=json_default, ensure_ascii=True)
            with target.open("w", encoding="utf-8") as out:
                out.write(head[:-1].rstrip() + ',\n "connections": ')
                with part.open("r", encoding="utf-8") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
                out.write("\n}\n")
        finally:
            part.unlink(missing_ok=True)
