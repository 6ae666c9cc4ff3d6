"""domainNames peers are judged by the names Hubble flows record for the destination
(`destination_names`), and only by them: a flow without names leaves a domain rule that
could decide unresolved ("destination name unknown"), never guessed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from click.testing import CliRunner

from simulator.cli import main

try:
    from tests.worldfiles import (
        cluster_policy,
        namespace,
        node,
        pod,
        write_cluster,
        write_policies,
    )
except ImportError:  # pragma: no cover
    from worldfiles import cluster_policy, namespace, node, pod, write_cluster, write_policies

WEB = "10.0.1.10"


def hubble_line(dst: str, port: int, names: list[str] | None, *, reply: bool = False,
                second: int = 0) -> str:
    """One Hubble flow (the `hubble observe -o json` wrapper) from the web pod, or its
    reply."""
    src_ep = {"namespace": "shop", "pod_name": "web-1",
              "labels": ["k8s:app=web", "k8s:io.kubernetes.pod.namespace=shop"]}
    dst_ep = {"identity": 2, "labels": ["reserved:world"]}
    flow: dict[str, Any] = {
        "time": f"2024-05-01T10:00:{second:02d}Z", "verdict": "FORWARDED",
        "IP": {"source": WEB, "destination": dst},
        "l4": {"TCP": {"source_port": 40000 + second, "destination_port": port,
                       "flags": {"SYN": True}}},
        "source": src_ep, "destination": dst_ep, "Type": "L3_L4", "is_reply": False,
        "trace_observation_point": "TO_STACK",
    }
    if names is not None:
        flow["destination_names"] = names
    if reply:
        flow["IP"] = {"source": dst, "destination": WEB}
        flow["l4"]["TCP"] = {"source_port": port, "destination_port": 40000 + second,
                             "flags": {"SYN": True, "ACK": True}}
        flow["source"], flow["destination"] = dst_ep, src_ep
        flow["is_reply"] = True
        flow.pop("destination_names", None)
        if names is not None:
            flow["source_names"] = names
    return json.dumps({"flow": flow, "node_name": "node-1"})


def guardrail(allow: list[str], shape: str = "ANP") -> dict[str, Any]:
    """Egress of shop to the internet: only to the listed names (Allow), the rest denied."""
    subject = {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}}
    if shape == "ANP":
        return cluster_policy("AdminNetworkPolicy", "egress-allowlist", {
            "priority": 10, "subject": subject,
            "egress": [{"name": "allowed-domains", "action": "Allow",
                        "to": [{"domainNames": allow}]},
                       {"name": "no-internet", "action": "Deny",
                        "to": [{"networks": ["0.0.0.0/0"]}]}]})
    return cluster_policy("ClusterNetworkPolicy", "egress-allowlist", {
        "tier": "Admin", "priority": 10, "subject": subject,
        "egress": [{"name": "allowed-domains", "action": "Accept",
                    "to": [{"domainNames": allow}]},
                   {"name": "no-internet", "action": "Deny",
                    "to": [{"networks": ["0.0.0.0/0"]}]}]})


def run(tmp_path: Path, lines: list[str], policies: list[dict[str, Any]]
        ) -> dict[tuple[str, int], dict[str, Any]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    flows = tmp_path / "flows.json"
    flows.write_text("\n".join(lines) + "\n")
    cluster = write_cluster(tmp_path / "cluster.json", [
        namespace("shop"), node("node-1", "172.16.0.1", ["10.0.1.0/24"]),
        pod("shop", "web-1", WEB, {"app": "web"})])
    pols = write_policies(tmp_path / "policies", policies)
    out = tmp_path / "out.parquet"
    r = CliRunner().invoke(main, ["--flows", str(flows), "--cluster", str(cluster),
                                  "--policies", str(pols), "--out", str(out), "--quiet",
                                  # Hubble flows would have Cilium inferred, which enforces
                                  # no AdminNetworkPolicy: the API's semantics are tested
                                  "--cni", "kubernetes"])
    assert r.exit_code in (0, 1), r.output
    return {(row["dst_ip"], row["dst_port"]): row for row in pq.read_table(out).to_pylist()}


def test_domain_rules_match_the_names_the_flow_recorded(tmp_path):
    lines = [hubble_line("93.184.216.34", 443, ["www.Example.com."]),
             hubble_line("93.184.216.34", 443, None, reply=True),
             hubble_line("140.82.112.3", 443, ["github.com"], second=1),
             hubble_line("151.101.1.69", 443, ["a.b.pypi.org"], second=2),
             hubble_line("1.2.3.4", 443, None, second=3)]
    for shape in ("ANP", "CNP"):
        rows = run(tmp_path / shape, lines,
                   [guardrail(["www.example.com", "*.pypi.org"], shape)])
        # the name (any case, with or without the root dot), a wildcard over two labels
        assert rows[("93.184.216.34", 443)]["candidate"] == "allow"
        assert rows[("93.184.216.34", 443)]["dst_names"] == "www.example.com"
        assert rows[("151.101.1.69", 443)]["candidate"] == "allow"
        # a recorded name that is not on the list: the Deny after it decides
        gh = rows[("140.82.112.3", 443)]
        assert gh["candidate"] == "deny"
        assert 'egress rule 1 "no-internet"' in gh["candidate_reason"]
        # no name recorded: the domain rule might match, so nothing is claimed
        unknown = rows[("1.2.3.4", 443)]
        assert unknown["candidate"] == "unknown" and unknown["change"] == "unresolved"
        assert "destination name unknown" in unknown["candidate_reason"]


def test_wildcards_match_whole_labels_only(tmp_path):
    lines = [hubble_line("151.101.1.69", 443, ["pypi.org"]),
             hubble_line("151.101.1.70", 443, ["notpypi.org"], second=1),
             hubble_line("151.101.1.71", 443, ["files.pypi.org"], second=2)]
    rows = run(tmp_path, lines, [guardrail(["*.pypi.org"])])
    assert rows[("151.101.1.69", 443)]["candidate"] == "deny"    # the suffix alone
    assert rows[("151.101.1.70", 443)]["candidate"] == "deny"    # not a whole label
    assert rows[("151.101.1.71", 443)]["candidate"] == "allow"


def test_names_with_underscores_are_valid_domain_peers(tmp_path):
    """The CRDs' pattern admits `_` in a label (service records, some internal hosts)."""
    lines = [hubble_line("10.9.0.1", 443, ["my_host.corp.example.com"]),
             hubble_line("10.9.0.2", 443, ["other_host.corp.example.com"], second=1)]
    for shape in ("ANP", "CNP"):
        rows = run(tmp_path / shape, lines, [guardrail(["my_host.corp.example.com"], shape)])
        assert rows[("10.9.0.1", 443)]["candidate"] == "allow"
        assert rows[("10.9.0.2", 443)]["candidate"] == "deny"


def test_a_domain_rule_that_cannot_decide_leaves_the_verdict_alone(tmp_path):
    """A Deny before the domain rule decides first: the missing name changes nothing."""
    subject = {"namespaces": {}}
    policy = cluster_policy("AdminNetworkPolicy", "first-deny", {
        "priority": 10, "subject": subject,
        "egress": [{"action": "Deny", "to": [{"networks": ["1.2.3.0/24"]}]},
                   {"action": "Allow", "to": [{"domainNames": ["example.com"]}]}]})
    rows = run(tmp_path, [hubble_line("1.2.3.4", 443, None)], [policy])
    assert rows[("1.2.3.4", 443)]["candidate"] == "deny"
