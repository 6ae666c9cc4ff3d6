"""AWS VPC flow logs delivered through CloudWatch Logs: the subscription envelope
`{"messageType", "owner", "logGroup", "logStream", "subscriptionFilters",
"logEvents": [{"id", "timestamp", "message"}]}` (often gzip-compressed; one or more
envelopes per file, as one object, concatenated objects or a JSON array).

Each event's `message` is one VPC flow log text record in the default v2 format, or in
the format given by --vpc-fields (CloudWatch has no header line). CONTROL_MESSAGE
envelopes carry no records. Records are split and mapped as in vpc_text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from . import vpc_text
from .vpc_text import (
    BENIGN_REASONS,
    DUPLICATE_REASON,
    measures,
    observation_point,
    post_columns,
)

__all__ = ["BENIGN_REASONS", "DUPLICATE_REASON", "OPTIONS", "REQUIRED", "describe", "measures",
           "observation_point", "post_columns", "raw_columns", "reader", "sniff"]

REQUIRED = ("CloudWatch Logs JSON ({\"logGroup\", \"logEvents\": [{\"message\": ...}]}) "
            "whose messages are VPC flow log records (default v2 format, or --vpc-fields)")
OPTIONS = ("vpc_fields",)

_EVENTS = re.compile(r'"logEvents"\s*:\s*\[')
_ENVELOPE_KEY = re.compile(r'"(?:logGroup|messageType|logStream)"\s*:')
_MESSAGE = re.compile(r'"message"\s*:\s*("(?:[^"\\]|\\.)*")')


def sniff(head: str, vpc_fields: str | None = None) -> bool:
    """A JSON envelope with logEvents whose first message looks like a VPC record: it
    starts with a version 2-8, or has the fields --vpc-fields names."""
    text = head.lstrip()
    if not text.startswith(("{", "[")) or not _EVENTS.search(text) \
            or not _ENVELOPE_KEY.search(text):
        return False
    m = _MESSAGE.search(text, _EVENTS.search(text).end())  # type: ignore[union-attr]
    if m is None:
        return True  # an envelope without events (or its first one beyond the head)
    try:
        message = json.loads(m.group(1))
    except ValueError:
        return False
    tokens = message.split()
    if vpc_fields:
        return bool(tokens) and vpc_text._fits(message, vpc_text.parse_fields(vpc_fields))
    # The envelope is unmistakable; a record of another field count is then reported
    # (and skipped) per record rather than the file refused.
    return bool(tokens) and tokens[0] in vpc_text._VERSIONS


def describe(head: str, path: Path, vpc_fields: str | None = None) -> dict[str, str]:
    fields = (vpc_text.parse_fields(vpc_fields) if vpc_fields
              else list(vpc_text.DEFAULT_FIELDS))
    return {"fields": " ".join(fields), "header": " ".join(fields),
            "compression": vpc_text.compression(path)}


def reader(files: list[str], params: dict[str, str], numbered: bool) -> str:
    """One row per log event: its split message `f`, or, for an event or envelope of
    another shape, `bad` saying what is wrong (one skipped record; the others stay)."""
    listed = "[" + ", ".join(vpc_text._sql_str(f) for f in files) + "]"
    src = (f"read_json({listed}, format = 'auto', columns = {{'messageType': 'VARCHAR', "
           f"'logEvents': 'JSON'}}, ignore_errors = true, maximum_object_size = 268435456, "
           f"compression = {vpc_text._sql_str(params.get('compression', 'auto'))}, "
           "filename = true)")
    split = vpc_text.split_sql("m")
    keep = vpc_text.keep_sql(params, "m")
    # the envelope's events, or one NULL standing for an envelope that has none to give
    events = """CASE WHEN json_type(logEvents) = 'ARRAY' AND json_array_length(logEvents) > 0
                     THEN CAST(logEvents -> '$[*]' AS JSON[]) ELSE [NULL::JSON] END"""
    bad = """CASE
        WHEN logEvents IS NULL AND messageType IS NULL
            THEN 'malformed JSON or not a CloudWatch Logs envelope'
        WHEN json_type(logEvents) <> 'ARRAY' THEN 'malformed envelope (logEvents is not a list)'
        WHEN json_type(e -> '$.message') <> 'VARCHAR'
            THEN 'malformed log event (message is not a string)' END"""
    return f"""(SELECT CASE WHEN bad IS NULL THEN {split} END AS f, bad
                   {', filename, place' if numbered else ''}
               FROM (
                   SELECT *, {bad} AS bad, e ->> '$.message' AS m,
                       CASE WHEN envelopes = 1 THEN 'event ' || i
                            ELSE 'envelope ' || envelope || ' event ' || i END AS place
                   FROM (
                       SELECT filename, logEvents, messageType,
                           n - min(n) OVER (PARTITION BY filename) + 1 AS envelope,
                           count(*) OVER (PARTITION BY filename) AS envelopes,
                           unnest({events}) AS e,
                           generate_subscripts({events}, 1) AS i
                       FROM (SELECT *, ordinality AS n FROM {src} WITH ORDINALITY))
                   -- an envelope without events (e.g. CONTROL_MESSAGE) holds no record
                   WHERE NOT (logEvents IS NOT NULL AND json_type(logEvents) = 'ARRAY'
                              AND json_array_length(logEvents) = 0)
                     AND coalesce(messageType, 'DATA_MESSAGE') = 'DATA_MESSAGE')
               WHERE bad IS NOT NULL OR {keep})"""


def raw_columns(params: dict[str, str]) -> dict[str, str]:
    raw = vpc_text.raw_columns(params)
    raw["r_bad_fields"] = f"coalesce(bad, {raw['r_bad_fields']})"
    return raw
