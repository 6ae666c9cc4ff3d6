"""Sentences a reader acts on: why a group breaks or is newly allowed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DIRECTIONS = ("egress", "ingress")
SHOWN_NAMES = 3


def names(items: Sequence[str], shown: int = SHOWN_NAMES) -> str:
    """'a', 'a and b', 'a, b and c', 'a, b, c and 4 more'."""
    items = list(items)
    if not items:
        return "no policy"
    if len(items) > shown:
        return ", ".join(items[:shown]) + f" and {len(items) - shown} more"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def port_label(protocol: str, port: int | None) -> str:
    return f"{protocol}/{port}" if port is not None else protocol


def who(side: dict[str, Any], sample_ip: str | None) -> str:
    """A workload by name; other endpoints by kind and the sample address."""
    if side["kind"] == "pod":
        return side["label"]
    more = side.get("addresses", 1) - 1
    return f"{side['kind']} address {sample_ip}" + (f" (and {more} more)" if more > 0 else "")


def _denied(subject: str, direction: str, isolated_by: list[str], port: str,
            peer: str) -> str:
    to = "to" if direction == "egress" else "from"
    return (f"{subject} is isolated for {direction} by {names(isolated_by)}; "
            f"no {direction} rule admits {port} {to} {peer}")


def reason_sentence(change: str, src: dict[str, Any], dst: dict[str, Any], protocol: str,
                    port: int | None, verdicts: dict[str, Any], has_baseline_set: bool,
                    sample: dict[str, Any]) -> str:
    pp = port_label(protocol, port)
    s, d = who(src, sample.get("src_ip")), who(dst, sample.get("dst_ip"))
    subject = {"egress": (s, d), "ingress": (d, s)}
    if change == "break":
        parts = [_denied(subject[x][0], x, verdicts["candidate"][x]["isolated_by"], pp,
                         subject[x][1])
                 for x in DIRECTIONS if verdicts["candidate"][x]["verdict"] == "deny"]
        return "; and ".join(parts) or "the candidate denies it"
    # newly allowed: what admits it now, and what denied it before
    now = []
    for x in DIRECTIONS:
        cand = verdicts["candidate"][x]
        if has_baseline_set and verdicts["baseline"][x]["verdict"] != "deny":
            continue
        if cand["allowed_by"]:
            now.append(f"{x} of {subject[x][0]} is admitted by {names(cand['allowed_by'])}")
        elif cand["verdict"] == "allow":
            now.append(f"{subject[x][0]} is no longer isolated for {x}")
    if not has_baseline_set:
        before = "the flow records show it denied today"
    else:
        before = "; ".join(
            "before, " + _denied(subject[x][0], x, verdicts["baseline"][x]["isolated_by"], pp,
                                 subject[x][1])
            for x in DIRECTIONS if verdicts["baseline"][x]["verdict"] == "deny")
    return "; ".join(now + [before]) if now else f"the candidate allows {pp}; {before}"
