"""CI gates: which of the requested conditions the run trips, each as a one-line reason
naming its gate."""

from __future__ import annotations

from typing import Any


def _n(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def tripped(summary: dict[str, Any], *, fail_on_break: bool = False,
            max_breaks: int | None = None, fail_on_unresolved: bool = False,
            fail_on_disagreement: bool = False, strict: bool = False) -> list[str]:
    by_change = summary["connections"]["by_change"]
    breaks = by_change["break"]["connections"]
    unresolved = by_change["unresolved"]["connections"]
    disagreements = summary["calibration"]["disagreements"]
    reasons = []
    if fail_on_break and breaks:
        reasons.append(f"--fail-on-break: {_n(breaks, 'observed connection')} would break")
    if max_breaks is not None and breaks > max_breaks:
        reasons.append(f"--max-breaks {max_breaks}: {_n(breaks, 'observed connection')} "
                       "would break")
    if fail_on_unresolved and unresolved:
        reasons.append(f"--fail-on-unresolved: {_n(unresolved, 'connection')} "
                       f"{'has' if unresolved == 1 else 'have'} an endpoint that matches "
                       "no pod")
    if fail_on_disagreement and disagreements:
        reasons.append(f"--fail-on-disagreement: the baseline disagrees with the recorded "
                       f"verdict on {disagreements:,} of "
                       f"{_n(summary['calibration']['compared'], 'connection')}")
    if strict:
        reasons += [f"--strict: {w['message']}" for w in summary.get("warnings") or []]
    return reasons
