"""Sentences a reader acts on: why a group breaks or is newly allowed, naming the tier
that decided and its policy and rule."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from ..policy import cilium_v2
from ..policy.ir import Policy
from ..policy.tables import display_name

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


_RULE_REF = re.compile(r"^(?P<ref>.+) (?P<direction>ingress|egress)\[(?P<idx>\d+)\]$")


class RuleNames:
    """Rule references of the verdict columns (`AdminNetworkPolicy/x egress[2]`) as a
    reader wants them: `AdminNetworkPolicy x (priority 10) egress rule 2 "deny-db"`."""

    def __init__(self, policies: Iterable[Policy] = ()) -> None:
        self.by_ref = {p.ref: p for p in policies}

    def _cilium(self, rule_ref: str) -> tuple[Policy, Any] | None:
        """A Cilium rule (`ns/name egressDeny[0]`): its policy and rule."""
        ref, _, path = rule_ref.rpartition(" ")
        policy = self.by_ref.get(ref)
        if policy is None or policy.dialect != cilium_v2.DIALECT:
            return None
        return policy, next((r for r in policy.rules if r.name == path), None)

    def policy(self, ref: str) -> str:
        """How a sentence names a policy: a Cilium one with its kind."""
        policy = self.by_ref.get(ref)
        return display_name(policy) if policy is not None else ref

    def _find(self, rule_ref: str) -> tuple[Policy | None, str, int]:
        m = _RULE_REF.match(rule_ref)
        if m is None:
            return None, "", 0
        return self.by_ref.get(m["ref"]), m["direction"], int(m["idx"])

    def tier(self, rule_ref: str) -> str | None:
        found = self._cilium(rule_ref)
        policy = found[0] if found else self._find(rule_ref)[0]
        return None if policy is None else policy.tier

    def label(self, rule_ref: str) -> str:
        found = self._cilium(rule_ref)
        if found is not None:
            policy, rule = found
            detail = f" ({rule.detail})" if rule is not None and rule.detail else ""
            return f"{display_name(policy)} {rule_ref.rpartition(' ')[2]}{detail}"
        policy, direction, idx = self._find(rule_ref)
        if policy is None or policy.tier == "namespace":
            return rule_ref
        rule = next((r for r in policy.rules
                     if r.direction == direction and r.index == idx), None)
        priority = "" if policy.kind == "BaselineAdminNetworkPolicy" else \
            f" (priority {policy.priority})"
        named = f' "{rule.name}"' if rule is not None and rule.name else ""
        return f"{policy.kind} {policy.name}{priority} {direction} rule {idx}{named}"

    def of_tier(self, refs: Sequence[str], tier: str) -> list[str]:
        return [self.label(r) for r in refs if self.tier(r) == tier]


def _passed(v: dict[str, Any], rules: RuleNames) -> str:
    """'passed by <admin rule> to the next tier; ' where an admin Pass handed it on."""
    if v.get("tier") == "admin":
        return ""
    passes = rules.of_tier(v.get("decided_by") or [], "admin")
    return f"passed by {names(passes)}, then " if passes else ""


def _judged(subject: str, direction: str, v: dict[str, Any], port: str, peer: str,
            rules: RuleNames, word: str) -> str:
    """Why `direction` of `subject` is `word` (denied/allowed), in the tier that decided."""
    to = "to" if direction == "egress" else "from"
    tier = v.get("tier")
    what = f"{direction} of {subject} {to} {peer} on {port}"
    if tier in ("admin", "baseline"):
        deciders = rules.of_tier(v.get("decided_by") or [], tier)
        where = ("admin tier" if tier == "admin"
                 else f"baseline tier: no NetworkPolicy isolates {subject} for {direction}")
        return f"{_passed(v, rules)}{what} is {word} by {names(deciders)} ({where})"
    if word == "allowed":
        if v.get("allowed_by"):
            admitted = [rules.label(r) for r in v["allowed_by"]]
            return f"{_passed(v, rules)}{what} is admitted by {names(admitted)}"
        return f"{_passed(v, rules)}{subject} is not isolated for {direction}"
    deny_rules = rules.of_tier(v.get("decided_by") or [], "namespace")
    if deny_rules:  # Cilium's deny rules: no allow overrides them
        return (f"{_passed(v, rules)}{what} is denied by {names(deny_rules)}: a deny rule "
                "wins over every allow")
    isolating = [rules.policy(r) for r in v.get("isolated_by") or []]
    return (f"{_passed(v, rules)}{subject} is isolated for {direction} by "
            f"{names(isolating)}; no {direction} rule admits {port} {to} {peer}")


def reason_sentence(change: str, src: dict[str, Any], dst: dict[str, Any], protocol: str,
                    port: int | None, verdicts: dict[str, Any], has_baseline_set: bool,
                    sample: dict[str, Any], rules: dict[str, RuleNames] | None = None) -> str:
    """rules: per policy set, how its rule references read."""
    rules = rules or {}
    pp = port_label(protocol, port)
    s, d = who(src, sample.get("src_ip")), who(dst, sample.get("dst_ip"))
    subject = {"egress": (s, d), "ingress": (d, s)}

    def judged(pset: str, x: str, word: str) -> str:
        return _judged(subject[x][0], x, verdicts[pset][x], pp, subject[x][1],
                       rules.get(pset, RuleNames()), word)

    if change == "break":
        parts = [judged("candidate", x, "denied") for x in DIRECTIONS
                 if verdicts["candidate"][x]["verdict"] == "deny"]
        return "; and ".join(parts) or "the candidate denies it"
    # newly allowed: what admits it now, and what denied it before
    now = []
    for x in DIRECTIONS:
        cand = verdicts["candidate"][x]
        if has_baseline_set and verdicts["baseline"][x]["verdict"] != "deny":
            continue
        if cand["verdict"] == "allow" and (cand["allowed_by"] or cand.get("decided_by")
                                           or cand.get("tier") not in (None, "default")):
            now.append(judged("candidate", x, "allowed"))
        elif cand["verdict"] == "allow":
            now.append(f"{subject[x][0]} is no longer isolated for {x}")
    if not has_baseline_set:
        before = "the flow records show it denied today"
    else:
        before = "; ".join("before, " + judged("baseline", x, "denied") for x in DIRECTIONS
                           if verdicts["baseline"][x]["verdict"] == "deny")
    return "; ".join(now + [before]) if now else f"the candidate allows {pp}; {before}"
