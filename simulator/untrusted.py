"""Strings from flows, snapshots and policies are untrusted: before they reach a terminal or
a text output, every character that could drive a terminal or reorder what a reader sees
is written as a visible escape.

Escaped: C0 controls and DEL (ESC, BEL, NUL, newlines inside a value), C1 controls (U+0080 to
U+009F: U+009B is a one-character CSI on some terminals), the bidirectional overrides and
isolates (U+202A-U+202E, U+2066-U+2069, plus U+200E/U+200F and U+061C), and the line and
paragraph separators. The data itself is never changed: selectors must match the bytes
the cluster holds, so escaping happens only where text leaves the program."""

from __future__ import annotations

import re

_OTHERS = (
    "\x7f-\x9f"                    # DEL, C1
    "\u061c\u200e\u200f"          # bidi marks
    "\u2028\u2029"                # line / paragraph separators
    "\u202a-\u202e\u2066-\u2069"  # bidi embeddings, overrides, isolates
)
_HOSTILE = re.compile(f"[\x00-\x1f{_OTHERS}]")
# in a document we rendered, its own tabs and line breaks stay
_HOSTILE_IN_DOCUMENT = re.compile(f"[\x00-\x08\x0b-\x1f{_OTHERS}]")


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def inert(text: object, keep_newlines: bool = False) -> str:
    """`text` with every hostile character escaped (\\x1b, \\u202e); keep_newlines leaves
    line breaks (for multi-line text we wrote ourselves around untrusted values)."""
    s = str(text)
    if not _HOSTILE.search(s):
        return s
    if keep_newlines:
        return "\n".join(_HOSTILE.sub(_escape, line) for line in s.split("\n"))
    return _HOSTILE.sub(_escape, s)



def inert_document(text: str) -> str:
    """A whole text document we rendered (HTML, Markdown) with every hostile character
    escaped but its own line breaks and tabs: one pass over the finished page covers
    every untrusted value in it, however the template placed it."""
    return _HOSTILE_IN_DOCUMENT.sub(_escape, text)


# The same escape in SQL, for outputs DuckDB writes (CSV, JSON Lines, the JSON
# connections). Values without a hostile character (nearly all) pass through the cheap
# test; the others are rebuilt character by character.
HOSTILE_SQL_CLASS = (r"[\x00-\x1f\x7f-\x9f\x{61c}\x{200e}\x{200f}\x{2028}\x{2029}"
              r"\x{202a}-\x{202e}\x{2066}-\x{2069}]")
INERT_MACRO_SQL = f"""
CREATE OR REPLACE MACRO inert(s) AS
    CASE WHEN NOT regexp_matches(s, '{HOSTILE_SQL_CLASS}') THEN s
         ELSE array_to_string(list_transform(string_split(s, ''), lambda c:
              CASE WHEN regexp_matches(c, '{HOSTILE_SQL_CLASS}')
                   THEN CASE WHEN unicode(c) < 256
                             THEN '\\x' || lpad(lower(to_hex(unicode(c))), 2, '0')
                             ELSE '\\u' || lpad(lower(to_hex(unicode(c))), 4, '0') END
                   ELSE c END), '') END
"""
