"""Azure NSG flow logs (v1, v2) and VNet flow logs: the published samples, observed
verdicts and rule traces, a break found with a kubectl snapshot, and malformed tuples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from worldfiles import namespace, netpol, node, pod, write_cluster, write_policies

from simulator.cli import main
from simulator.ingest import azure

AZURE = Path(__file__).parent / "fixtures" / "azure"
NSG_SAMPLE = AZURE / "azure-docs-nsg-flow-log-v2-example.json"
VNET_SAMPLE = AZURE / "azure-docs-vnet-flow-log-v4-example.json"


def simulate(tmp: Path, flows: Path, policies: list[dict] | None = None,
             *extra: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    write_policies(tmp / "p", policies or [])
    out, js = tmp / f"{flows.name}.parquet", tmp / f"{flows.name}.out.json"
    result = CliRunner().invoke(main, [str(a) for a in (
        "--flows", flows, "--policies", tmp / "p", "--out", out, "--json", js, "-q", *extra)])
    assert result.exit_code == 0, result.output
    summary = json.loads(js.read_text())["summary"]
    fl = summary["flows"]
    assert fl["read"] == fl["evaluated"] + sum(fl["skipped"].values()), flows.name
    return pq.read_table(out).to_pylist(), summary


def nsg_blob(groups: dict[str, list[str]], version: int = 2,
             nsg: str = "AKS-AGENTPOOL-NSG") -> dict[str, Any]:
    """An NSG flow log blob: rule -> flow tuples, in one record."""
    return {"records": [{
        "time": "2024-06-01T12:01:00.0000000Z", "systemId": "0000",
        "category": "NetworkSecurityGroupFlowEvent",
        "resourceId": f"/SUBSCRIPTIONS/0/RESOURCEGROUPS/MC_RG/PROVIDERS/MICROSOFT.NETWORK/"
                      f"NETWORKSECURITYGROUPS/{nsg}",
        "operationName": "NetworkSecurityGroupFlowEvents",
        "properties": {"Version": version, "flows": [
            {"rule": rule, "flows": [{"mac": "000D3A000001", "flowTuples": tuples}]}
            for rule, tuples in groups.items()]}}]}


def vnet_blob(groups: dict[str, list[str]], acl: str = "acl-1") -> dict[str, Any]:
    return {"records": [{
        "time": "2024-06-01T12:01:00.0000000Z", "flowLogVersion": 4,
        "macAddress": "000D3A000001", "category": "FlowLogFlowEvent",
        "operationName": "FlowLogFlowEvent",
        "flowRecords": {"flows": [{"aclID": acl, "flowGroups": [
            {"rule": rule, "flowTuples": tuples} for rule, tuples in groups.items()]}]}}]}


def write(path: Path, blob: dict[str, Any]) -> Path:
    path.write_text(json.dumps(blob, indent=4))  # pretty-printed, as Azure writes blobs
    return path


# --- the published samples ------------------------------------------------------------------

@pytest.mark.parametrize("path,tuples", [(NSG_SAMPLE, 11), (VNET_SAMPLE, 19)],
                         ids=["nsg-v2", "vnet-v4"])
def test_samples_run_and_account(tmp_path, path, tuples):
    rows, summary = simulate(tmp_path, path)
    assert {f["format"] for f in summary["inputs"]["flows"]} == {"azure"}
    assert summary["flows"]["read"] == summary["flows"]["evaluated"] == tuples
    assert sum(r["flows"] for r in rows) == tuples


def test_nsg_sample_verdicts_counters_and_rules(tmp_path):
    rows, _ = simulate(tmp_path, NSG_SAMPLE)
    by_dst = {(r["src_ip"], r["dst_ip"], r["dst_port"]): r for r in rows}
    udp = by_dst[("192.0.2.190", "10.5.16.4", 443)]
    assert (udp["protocol"], udp["observed"]) == ("UDP", "denied")
    assert udp["observed_policies"] == \
        "inbound denied by rule DefaultRule_DenyAllInBound (NSG FABRIAKMVM1-NSG)"
    out = by_dst[("10.5.16.4", "203.0.113.115", 443)]  # C,30,16978,24,14008
    assert (out["observed"], out["packets"], out["bytes"]) == ("allowed", 54, 30986)
    assert out["reply_flows"] == 0
    assert "outbound allowed by rule DefaultRule_AllowInternetOutBound" in \
        out["observed_policies"]


def test_vnet_sample_states_and_milliseconds(tmp_path):
    rows, _ = simulate(tmp_path, VNET_SAMPLE)
    by = {(r["src_ip"], r["dst_ip"], r["dst_port"]): r for r in rows}
    ssh = by[("101.33.218.153", "10.0.0.6", 22)]  # state D
    assert (ssh["observed"], ssh["protocol"]) == ("denied", "TCP")
    assert "BlockHighRiskTCPPortsFromInternet" in ssh["observed_policies"]
    # begin and end tuples of one connection are one tuple group; E carries the counters
    web = by[("10.0.0.6", "104.16.218.84", 443)]
    assert (web["observed"], web["flows"], web["packets"], web["bytes"]) == \
        ("allowed", 2, 55, 34683)
    # epoch milliseconds: 1663146017343 -> 2022-09-14
    assert str(web["first_seen"]).startswith("2022-09-14")


def test_sniff_is_strict():
    assert azure.sniff(NSG_SAMPLE.read_text()) and azure.sniff(VNET_SAMPLE.read_text())
    fixtures = Path(__file__).parent / "fixtures"
    for p in fixtures.rglob("*"):
        if p.is_file() and "azure" not in p.parts and p.suffix in (".json", ".jsonl", ".log"):
            assert not azure.sniff(p.read_text(errors="replace")[:65536]), p
    assert not azure.sniff('{"logEvents": [{"message": "2 123 eni-1 ..."}]}')
    assert not azure.sniff('{"records": [{"category": "AuditEvent", "properties": {}}]}')
    # a first record larger than the head is told by its opening
    big = json.dumps(nsg_blob({"r": ["1717243200,10.0.0.1,10.0.0.2,1,2,T,O,A"] * 5000}, 1))
    assert azure.sniff(big[:65536])


# --- a break found from a flow log and a kubectl snapshot -----------------------------------

def test_flow_log_with_snapshot_finds_a_break(tmp_path):
    objs = [namespace("shop"), namespace("pay"), node("aks-node-1", "10.224.0.4"),
            pod("shop", "web-0", "10.224.0.20", {"app": "web"}),
            pod("pay", "batch-0", "10.224.0.21", {"app": "batch"}),
            pod("pay", "api-0", "10.224.0.30", {"app": "api"}, [(None, 8443, "TCP")])]
    write_cluster(tmp_path / "c.json", objs)
    policy = netpol("pay", "api", {"podSelector": {"matchLabels": {"app": "api"}}, "ingress": [
        {"from": [{"podSelector": {"matchLabels": {"app": "batch"}}}],
         "ports": [{"port": 8443}]}]})
    blob = nsg_blob({
        "UserRule_AllowVnet": [
            "1717243200,10.224.0.20,10.224.0.30,40000,8443,T,I,A,B,,,,",
            "1717243260,10.224.0.20,10.224.0.30,40000,8443,T,I,A,E,5,600,4,900",
            "1717243200,10.224.0.21,10.224.0.30,41000,8443,T,I,A,C,2,200,2,300"],
        "UserRule_DenyInternet": [
            "1717243200,203.0.113.9,10.224.0.30,42000,8443,T,I,D,B,,,,"]})
    flows = write(tmp_path / "PT1H.json", blob)
    rows, _ = simulate(tmp_path, flows, [policy], "--cluster", tmp_path / "c.json")
    by_src = {r["src_ip"]: r for r in rows}
    web = by_src["10.224.0.20"]
    assert (web["src_pod"], web["dst_pod"], web["dst_port"]) == ("web-0", "api-0", 8443)
    assert (web["flows"], web["packets"], web["bytes"]) == (2, 9, 1500)
    assert web["change"] == "break"
    assert "pay/api" in web["candidate_reason"]
    assert by_src["10.224.0.21"]["change"] == "still_allowed"
    world = by_src["203.0.113.9"]
    assert (world["observed"], world["change"]) == ("denied", "still_denied")


def test_vnet_log_and_nsg_v1_find_the_same_break(tmp_path):
    policy = netpol("default", "deny-all", {"podSelector": {}, "policyTypes": ["Ingress"]})
    write_cluster(tmp_path / "c.json", [namespace("default"),
                                        pod("default", "a", "10.1.0.5", {"app": "a"}),
                                        pod("default", "b", "10.2.0.9", {"app": "b"})])
    vnet = write(tmp_path / "vnet.json", vnet_blob({"AllowVnetInBound": [
        "1717243200000,10.1.0.5,10.2.0.9,40000,80,6,I,B,NX,0,0,0,0",
        "1717243260000,10.1.0.5,10.2.0.9,40000,80,6,I,E,NX,3,300,3,900"]}))
    v1 = write(tmp_path / "v1.json", nsg_blob({"AllowVnetInBound": [
        "1717243200,10.1.0.5,10.2.0.9,40000,80,T,I,A"]}, version=1))
    for flows in (vnet, v1):
        (d := tmp_path / flows.stem).mkdir()
        (r,), _ = simulate(d, flows, [policy], "--cluster", tmp_path / "c.json")
        assert (r["src_ip"], r["dst_ip"], r["dst_port"], r["protocol"]) == \
            ("10.1.0.5", "10.2.0.9", 80, "TCP")
        assert (r["observed"], r["change"]) == ("allowed", "break")


# --- malformed input ------------------------------------------------------------------------

def test_malformed_tuples_are_skipped_and_counted(tmp_path):
    blob = nsg_blob({"r": [
        "1717243200,10.1.0.5,10.2.0.9,40000,80,T,O,A,B,,,,",
        "1717243200,10.1.0.5,10.2.0.9,40000",  # wrong field count
        "1717243200,10.1.0.999,10.2.0.9,40000,80,T,O,A,B,,,,",  # bad address
        "1717243200,10.1.0.5,10.2.0.9,40000,80,T,O,X,B,,,,"]})  # unknown decision
    rows, summary = simulate(tmp_path, write(tmp_path / "f.json", blob))
    assert len(rows) == 1
    skipped = summary["flows"]["skipped"]
    assert sum(skipped.values()) == 3
    assert skipped["malformed flow tuple (4 fields, expected 13)"] == 1
    assert skipped["invalid IP address"] == 1
    assert any("flowTuples[1]" in e for e in summary["flows"]["skipped_examples"])


def test_blob_still_being_written_is_one_skipped_record(tmp_path):
    """A blob whose end is not written yet is one skipped record; the hour's complete blobs
    beside it are judged (alone, it leaves nothing to judge: exit 2)."""
    text = NSG_SAMPLE.read_text()
    hours = tmp_path / "blobs"
    (hours / "h=11").mkdir(parents=True)
    (hours / "h=12").mkdir(parents=True)
    (hours / "h=11" / "PT1H.json").write_text(text)
    (hours / "h=12" / "PT1H.json").write_text(text[:2000])  # the blob's end not written yet
    rows, summary = simulate(tmp_path, hours)
    files = {Path(f["file"]).parent.name: f for f in summary["flows"]["files"]}
    assert files["h=12"]["records"] == 1 and files["h=12"]["evaluated"] == 0
    assert files["h=12"]["skipped"] == {
        "malformed or truncated JSON object, or no records array": 1}
    assert files["h=11"]["evaluated"] == files["h=11"]["records"] > 0
    alone = CliRunner().invoke(main, ["--flows", str(hours / "h=12" / "PT1H.json"),
                                      "--policies", str(tmp_path / "p")])
    assert alone.exit_code == 2 and "nothing to judge" in alone.output
