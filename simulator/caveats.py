"""What a run could not judge, as part of its verdict.

A verdict is only as good as what it judged: a run that evaluated nothing ends with exit
code 2 (nothing_to_judge); a run that judged part of what it was given carries warnings
(collect_warnings), shown in every headline (terminal, HTML, Markdown), listed under
`warnings` in --json, and tripping the --strict gate."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from .errors import NothingToJudge
from .ingest.sources import FORMATS, TEXT_FORMATS, FlowSource

# Skip reasons that leave nothing unjudged (a window without traffic, a second sighting of
# the same packet or connection, an event that is not a flow): the formats declare them.
BENIGN_SKIPS = frozenset(r for m in (*FORMATS.values(), *TEXT_FORMATS.values())
                         for r in getattr(m, "BENIGN_REASONS", ()))
# API groups whose objects are network policies of some dialect, and kinds by name: a
# policy set holding them is judged without them (a ConfigMap beside the policies is just
# not a policy, and not a warning).
POLICY_GROUPS = ("cilium.io", "projectcalico.org", "crd.projectcalico.org",
                 "policy.networking.k8s.io", "crd.antrea.io", "security.antrea.io",
                 "networking.gke.io", "k8s.ovn.org", "network.openshift.io")
# Above this share of evaluated flows touching an endpoint that could not be mapped (in a
# pod CIDR but no pod, or a Service address), the run's verdict covers too little.
UNRESOLVED_SHARE = 0.05
TOP_REASONS = 4


def _counts(counts: dict[str, int]) -> str:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{reason} ×{n:,}" for reason, n in items[:TOP_REASONS])
    more = len(items) - TOP_REASONS
    return shown + (f", and {more} more reason{'s' if more != 1 else ''}" if more > 0 else "")


def nothing_to_judge(files: list[dict[str, Any]], examples: list[str],
                     skipped_files: list[dict[str, str]]) -> NothingToJudge:
    """The error of a run in which no record was evaluated, with the counts by reason."""
    skipped: dict[str, int] = {}
    for f in files:
        for reason, n in f["skipped"].items():
            skipped[reason] = skipped.get(reason, 0) + n
    read = sum(f["records"] for f in files)
    where = ", ".join(f["file"] for f in files[:3]) + (", …" if len(files) > 3 else "")
    parts = []
    if files:
        parts.append(f"0 of {read:,} record{'s' if read != 1 else ''} evaluated"
                     + (f" ({_counts(skipped)})" if skipped else ""))
    if skipped_files:
        parts.append(f"{len(skipped_files)} file{'s' if len(skipped_files) != 1 else ''} "
                     "skipped (" + _counts(Counter(f["reason"] for f in skipped_files)) + ")")
    if any(r.startswith("wrong number of fields") for r in skipped):
        parts.append("for a VPC flow log format without a header line, give its fields "
                     "with --vpc-fields")
    if not files and skipped_files:
        where = ", ".join(f["file"] for f in skipped_files[:3]) + (
            ", …" if len(skipped_files) > 3 else "")
    return NothingToJudge(where or "--flows", "nothing to judge: " + "; ".join(parts))


def is_policy_kind(api_kind: str) -> bool:
    """'apiVersion kind' of an ignored object: is it a network policy of another dialect?"""
    api, _, kind = api_kind.rpartition(" ")
    group = api.split("/")[0] if "/" in api else ""
    return "Policy" in kind or group in POLICY_GROUPS


def collect_warnings(summary: dict[str, Any], sources: Sequence[FlowSource]
                     ) -> list[dict[str, str]]:
    """[{code, message}] of everything the run could not judge, most serious first."""
    out: list[dict[str, str]] = []

    def warn(code: str, message: str) -> None:
        out.append({"code": code, "message": message})

    inputs, flows, conns = summary["inputs"], summary["flows"], summary["connections"]
    plane = summary.get("dataplane") or {}
    if plane and not plane["enforces_policy"]:
        warn("not_enforced_by_cni",
             f"not enforced by {plane['cni']}: every connection stays allowed on the wire "
             f"whatever the policies say; {plane.get('advice') or ''}".rstrip("; "))
    for name in ("candidate", "baseline"):
        pset = inputs[name]
        if pset is None:
            continue
        ignored = {k: n for k, n in pset["ignored"].items() if is_policy_kind(k)}
        if ignored:
            kinds = ", ".join(f"{k} ×{n:,}" for k, n in ignored.items())
            warn("ignored_policy_kinds",
                 f"{name} policies not judged: {kinds} (a dialect this version does not "
                 "read; the verdicts are as if they did not exist)")
        dropped = pset.get("not_enforced") or {}
        if dropped:
            kinds = ", ".join(f"{k} ×{n:,}" for k, n in dropped.items())
            warn("not_enforced_kinds",
                 f"{name} policies not enforced by {plane.get('cni')}: {kinds} (the "
                 "dataplane does not enforce these kinds; their rules decide nothing)")
        if not pset["policies"] and not dropped:
            warn("empty_policy_set",
                 f"the {name} set holds no policy: every pod is open in both directions "
                 "under it")
        closed = [x for x in pset.get("notes") or [] if "fails closed" in x]
        other = [x for x in pset.get("notes") or [] if "fails closed" not in x]
        if closed:
            n = len(closed)
            warn("fail_closed_peers",
                 f"{name}: {n} peer{'s' if n != 1 else ''} of a newer API than this version "
                 f"reads, failing closed as the API says (e.g. {closed[0]})")
        if other:  # e.g. a Cilium reference to a Service or CIDR group that is not there
            n = len(other)
            warn("policy_notes",
                 f"{name}: {n} thing{'s' if n != 1 else ''} to know about how its policies "
                 f"were read (e.g. {other[0]})")
    if not conns["with_pod"]:
        why = ("no address in the flows is a pod of the cluster snapshot, and the flows "
               "carry no pod identity" if inputs["cluster"]["pods"] else
               "no --cluster and no pod identity in the flows")
        warn("no_pod_identity",
             f"no endpoint could be mapped to a pod ({why}): every address counts as "
             "external, and no policy selects it")
    share = conns["unmapped_flows"] / flows["evaluated"] if flows["evaluated"] else 0.0
    if share >= UNRESOLVED_SHARE:
        warn("unresolved_share",
             f"{share:.0%} of the evaluated flows have an endpoint that could not be mapped "
             "(an address in a pod CIDR that matches no pod, or a Service address not "
             "followed to a backend): their verdicts are unresolved")
    hidden = conns.get("source_hidden_by_snat") or {}
    if hidden.get("connections"):
        n, ex = hidden["connections"], hidden["examples"][0]
        warn("source_hidden_by_snat",
             f"{n:,} connection{'s' if n != 1 else ''} from a node to an outside address in "
             "VPC flow logs without pkt-srcaddr: source hidden by SNAT (a pod's egress "
             "masqueraded to its node looks the same); judged as the node's own traffic, "
             f"which no pod policy governs, e.g. {ex['src_ip']} -> {ex['dst_ip']}; log "
             "pkt-srcaddr to see the pod")
    services = conns.get("services") or {}
    if services.get("not_followed"):
        n = services["not_followed"]
        warn("services_not_followed",
             f"{n:,} connection{'s' if n != 1 else ''} to a Service address could not be "
             "followed to a backend (the snapshot has no EndpointSlices or Endpoints with a "
             "ready endpoint for that port at the flow's time): unresolved")
    undecided = conns.get("undecided") or {}
    for why, code, says in (
            ("service backends disagree", "service_backends_disagree",
             "a Service's backends would judge them differently and the records do not "
             "say which backend served them"),
            ("ambiguous priority", "ambiguous_priority",
             "policies at the same priority match them and disagree (the API leaves the "
             "outcome undefined)"),
            ("destination name unknown", "destination_names_unknown",
             "a domainNames rule might decide them, but the flows do not say which name the "
             "destination was resolved from (Hubble flows do)")):
        if why in undecided:
            n, ex = undecided[why]["connections"], undecided[why]["examples"][0]
            warn(code, f"{n:,} connection{'s' if n != 1 else ''} left unresolved: {says}; "
                       f"e.g. {ex['src_ip']} -> {ex['dst_ip']} {ex['protocol']}"
                       + (f"/{ex['dst_port']}" if ex["dst_port"] is not None else ""))
    not_judged = {r: n for r, n in flows["skipped"].items() if r not in BENIGN_SKIPS}
    if not_judged:
        n = sum(not_judged.values())
        warn("skipped_records",
             f"{n:,} record{'s' if n != 1 else ''} skipped, not judged: {_counts(not_judged)}")
    field_counts = sum(n for r, n in not_judged.items()
                       if r.startswith("wrong number of fields"))
    if field_counts and any(s.format.startswith("vpc") for s in sources):
        warn("wrong_field_count",
             f"{field_counts:,} VPC flow log record{'s' if field_counts != 1 else ''} had "
             "another number of fields than the format: for a custom format without a "
             "header line, give the fields with --vpc-fields")
    if inputs["skipped_files"]:
        files = inputs["skipped_files"]
        listed = "; ".join(f"{f['file']}: {f['reason']}" for f in files[:3])
        warn("skipped_files",
             f"{len(files)} file{'s' if len(files) != 1 else ''} in the --flows "
             f"directories or patterns could not be read as flows and were skipped: {listed}"
             + (" …" if len(files) > 3 else ""))
    cluster = inputs["cluster"]
    if cluster["skipped"]:
        n = cluster["skipped"]
        warn("cluster_items_skipped",
             f"{n:,} cluster snapshot item{'s' if n != 1 else ''} could not be understood "
             f"and {'were' if n != 1 else 'was'} skipped (e.g. {cluster['skipped_examples'][0]})")
    return out
