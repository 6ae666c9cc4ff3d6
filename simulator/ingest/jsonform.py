"""Helpers shared by the JSON flow formats that are not Hubble (Calico, Antrea): how a
file lays out its objects, what the first object holds, and the DuckDB row source.

Layouts: `newline_delimited` (one object a line: a malformed line is one record, skipped
and counted), `array` (a JSON array of objects, e.g. `antctl ... -o json`) and
`unstructured` (pretty-printed objects one after another).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

_KEY = re.compile(r'"([A-Za-z_@][\w@.\-]*)"\s*:')


def layout(head: str) -> str | None:
    text = head.lstrip("\ufeff \t\r\n")
    if text.startswith("["):
        return "array"
    if not text.startswith("{"):
        return None
    # pretty-printed objects open with a lone brace; anything else is one object a line
    # (a malformed line among them is then one bad record)
    return "unstructured" if text.split("\n", 1)[0].strip() == "{" else "newline_delimited"


def first_keys(head: str, wrapper: str | None = None) -> set[str] | None:
    """The keys of the file's first object (inside `wrapper` when it has one), or when
    that object is not complete within the head, every key named in its first 8 KiB."""
    kind = layout(head)
    if kind is None:
        return None
    text = head.lstrip("\ufeff \t\r\n")
    obj: object = None
    if kind == "newline_delimited":
        try:
            obj = json.loads(text.split("\n", 1)[0])
        except ValueError:
            obj = None
    else:
        try:
            obj = json.JSONDecoder().raw_decode(text[1:].lstrip() if kind == "array"
                                                else text)[0]
        except ValueError:
            obj = None
    if isinstance(obj, dict):
        inner = obj.get(wrapper) if wrapper else None
        return set(inner) if isinstance(inner, dict) else set(obj)
    if obj is not None:
        return set()
    return set(_KEY.findall(text[:8192]))


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def read_json_sql(files: list[str], columns: Mapping[str, str], kind: str,
                  numbered: bool) -> str:
    """The files' objects as rows of `columns` (plus `filename` and `place` when
    numbered). Objects that are not, or do not parse, give a row of NULLs."""
    listed = "[" + ", ".join(_sql_str(f) for f in files) + "]"
    cols = "{" + ", ".join(f"{_sql_str(k)}: {_sql_str(v)}" for k, v in columns.items()) + "}"
    src = (f"read_json({listed}, format = {_sql_str(kind)}, columns = {cols}, "
           "filename = true, ignore_errors = true, maximum_object_size = 16777216)")
    if not numbered:
        return src
    unit = "line" if kind == "newline_delimited" else "record"
    return (f"(SELECT *, '{unit} ' || row_number() OVER (PARTITION BY filename) AS place "
            f"FROM {src})")
