"""Calico Enterprise flow logs and Antrea flow records: the published samples, identity
from the record itself (no --cluster), reporter de-duplication, observed verdicts and
bad lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from worldfiles import netpol, write_policies

from simulator.cli import main
from simulator.ingest import antrea, calico, hubble

FIXTURES = Path(__file__).parent / "fixtures"
CALICO = FIXTURES / "calico"
ANTREA = FIXTURES / "antrea"


def run(*args: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    out = Path(args[args.index("--out") + 1])
    js = Path(args[args.index("--json") + 1])
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    summary = json.loads(js.read_text())
    return pq.read_table(out).to_pylist(), summary


def simulate(tmp: Path, flows: Path, policies: list[dict] | None = None,
             ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    write_policies(tmp / "p", policies or [])
    rows, summary = run("--flows", flows, "--policies", tmp / "p", "--out",
                        tmp / f"{flows.name}.parquet", "--json", tmp / f"{flows.name}.json", "-q")
    fl = summary["summary"]["flows"]
    assert fl["read"] == fl["evaluated"] + sum(fl["skipped"].values()), flows.name
    return rows, summary["summary"]


def formats(summary: dict[str, Any]) -> set[str]:
    return {f["format"] for f in summary["inputs"]["flows"]}


# --- the published samples ------------------------------------------------------------------

SAMPLES = [
    (CALICO / "tigera-docs-enterprise-flowlog-example.json", "calico", 1),
    (CALICO / "tigera-docs-enterprise-flowlog-example.verbatim.txt", "calico", 1),
    (CALICO / "tigera-docs-host-forwarded-examples.jsonl", "calico", 2),
    (CALICO / "tigera-docs-enterprise-flowlog-space-delimited-example.log", "calico", 1),
    (ANTREA / "antctl-get-flowrecords-docs-example.json", "antrea", 1),
    (ANTREA / "flowlogger-csv-unit-test-examples.csv", "antrea", 2),
]


@pytest.mark.parametrize("path,fmt,records", SAMPLES, ids=[s[0].name for s in SAMPLES])
def test_samples_run_and_account(tmp_path, path, fmt, records):
    rows, summary = simulate(tmp_path, path)
    assert formats(summary) == {fmt}
    assert summary["flows"]["read"] == records
    assert summary["flows"]["evaluated"] == records
    assert sum(r["flows"] for r in rows) == records


def test_calico_sample_identity_and_verdict(tmp_path):
    rows, _ = simulate(tmp_path, CALICO / "tigera-docs-enterprise-flowlog-example.json")
    (r,) = rows
    assert (r["src_ip"], r["dst_ip"], r["dst_port"], r["protocol"]) == \
        ("192.168.47.9", "192.168.138.79", 80, "TCP")
    assert (r["src_kind"], r["src_namespace"], r["src_pod"]) == \
        ("pod", "policy-demo", "access-6b687c8dcb-zn5s2")
    assert (r["dst_workload"], r["observed"]) == ("Deployment/nginx", "allowed")
    assert (r["packets"], r["bytes"], r["reply_flows"]) == (11, 1501, 0)
    assert r["direction"] == "flow flag"  # source_* is the initiator


def test_calico_record_names_the_service_it_was_sent_to(tmp_path):
    # the published sample with the Service fields Calico fills when a Service was hit
    # (`-` otherwise): the record's destination is the backend; the Service is named beside
    record = json.loads((CALICO / "tigera-docs-enterprise-flowlog-example.json").read_text())
    record.update(dest_service_name="nginx", dest_service_namespace="policy-demo",
                  dest_service_port="http", dest_service_port_num=80)
    other = {**record, "source_ip": "192.168.47.10", "source_name": "access-2",
             "dest_service_name": "-", "dest_service_namespace": "-"}
    (tmp_path / "svc.json").write_text(json.dumps(record) + "\n" + json.dumps(other) + "\n")
    rows, summary = simulate(tmp_path, tmp_path / "svc.json")
    by_src = {r["src_ip"]: r for r in rows}
    assert by_src["192.168.47.9"]["dst_service"] == "policy-demo/nginx"
    assert by_src["192.168.47.9"]["dst_workload"] == "Deployment/nginx"
    assert by_src["192.168.47.10"]["dst_service"] is None
    assert summary["dataplane"]["cni"] == "calico"       # inferred from the records


def test_calico_host_forwarded_pub_network_is_external(tmp_path):
    rows, _ = simulate(tmp_path, CALICO / "tigera-docs-host-forwarded-examples.jsonl")
    by_src = {r["src_ip"]: r for r in rows}
    assert (by_src["34.0.113.100"]["src_kind"], by_src["34.0.113.100"]["dst_kind"]) == \
        ("external", "external")
    assert by_src["10.0.0.1"]["dst_pod"] == "maintenance-server-gkh45"


def test_calico_space_delimited_aggregated_pods_without_ip(tmp_path):
    """Names aggregated to a prefix and IPs dropped: the pods are named by their prefix
    and get a placeholder address in 100::/64."""
    rows, _ = simulate(tmp_path,
                       CALICO / "tigera-docs-enterprise-flowlog-space-delimited-example.log")
    (r,) = rows
    assert (r["src_pod"], r["dst_pod"], r["dst_port"]) == ("rails-81531*", "memcached-38456*",
                                                            3000)
    assert r["src_ip"].startswith("100::") and r["dst_ip"].startswith("100::")
    assert (r["packets"], r["bytes"], r["observed"]) == (215, 119515, "allowed")


def test_antrea_samples_identity_and_denied(tmp_path):
    rows, _ = simulate(tmp_path, ANTREA / "flowlogger-csv-unit-test-examples.csv")
    (r,) = rows  # prettyPrint and numeric lines are the same connection
    assert (r["src_pod"], r["src_namespace"], r["dst_pod"], r["dst_namespace"]) == \
        ("perftest-a", "antrea-test", "perftest-b", "antrea-test-b")
    assert (r["observed"], r["flows"], r["dst_port"]) == ("denied", 2, 5201)  # ingress Drop
    rows, _ = simulate(tmp_path, ANTREA / "antctl-get-flowrecords-docs-example.json")
    (r,) = rows
    assert (r["dst_pod"], r["dst_port"], r["protocol"]) == \
        ("coredns-78fcd69978-x2twv", 53, "UDP")
    assert (r["packets"], r["bytes"], r["observed"]) == (2, 291, "allowed")


# --- identity from the record evaluates policies without a cluster --------------------------

API_POLICY = netpol("pay", "api", {"podSelector": {"matchLabels": {"app": "api"}}, "ingress": [
    {"from": [{"podSelector": {"matchLabels": {"app": "batch"}}}],
     "ports": [{"port": 8443}]}]})


def calico_record(src: tuple, dst: tuple, *, action: str = "allow", reporter: str = "src",
                  port: int = 8443, t: int = 1717243200, **extra: Any) -> str:
    """src/dst: (ip|None, name|'-', name_aggr, namespace, type, labels)."""
    rec: dict[str, Any] = {"start_time": t, "end_time": t + 300}
    for side, (ip, name, aggr, ns, typ, labels) in (("source", src), ("dest", dst)):
        rec.update({f"{side}_ip": ip, f"{side}_name": name, f"{side}_name_aggr": aggr,
                    f"{side}_namespace": ns, f"{side}_type": typ,
                    f"{side}_labels": {"labels": labels} if labels is not None else None})
    rec.update({"source_port": None, "dest_port": port, "proto": "tcp", "action": action,
                "reporter": reporter, "packets_in": 3, "packets_out": 4, "bytes_in": 300,
                "bytes_out": 400, "num_flows": 2,
                "policies": {"all_policies": ["0|default|pay/knp.default.api|allow|0"]}})
    rec.update(extra)
    return json.dumps(rec)


WEB = ("10.1.0.5", "web-7d9f8c6b5-x2x4z", "web-7d9f8c6b5-*", "shop", "wep",
       ["app=web", "pod-template-hash=7d9f8c6b5", "projectcalico.org/namespace=shop"])
API = ("10.2.0.9", "api-5c6d7f8b9-abcde", "api-5c6d7f8b9-*", "pay", "wep",
       ["app=api", "pod-template-hash=5c6d7f8b9"])
BATCH_AGGR = (None, "-", "batch-6c7d8f9b5-*", "pay", "wep", ["app=batch"])
API_AGGR = (None, "-", "api-5c6d7f8b9-*", "pay", "wep", ["app=api"])
PUB = (None, "-", "pub", "-", "net", None)


def test_calico_file_alone_finds_a_break(tmp_path):
    lines = [
        calico_record(WEB, API),
        # the same connection logged by the destination's node: counted once
        calico_record(WEB, API, reporter="dst"),
        # aggregated without IPs: evaluated by namespace and labels
        calico_record(BATCH_AGGR, API_AGGR),
        # a public network without an IP: nothing to evaluate ipBlocks against
        calico_record(PUB, API_AGGR, reporter="dst"),
        "{not json",
    ]
    (tmp_path / "flows.json").write_text("\n".join(lines) + "\n")
    rows, summary = simulate(tmp_path, tmp_path / "flows.json", [API_POLICY])
    assert formats(summary) == {"calico"}
    by_src = {r["src_pod"]: r for r in rows}
    web = by_src["web-7d9f8c6b5-x2x4z"]
    assert (web["observed"], web["change"], web["flows"]) == ("allowed", "break", 1)
    assert "isolated by pay/api" in web["candidate_reason"]
    assert (web["src_workload"], web["packets"]) == ("Deployment/web", 7)
    batch = by_src["batch-6c7d8f9b5-*"]
    assert (batch["src_kind"], batch["dst_pod"], batch["change"]) == \
        ("pod", "api-5c6d7f8b9-*", "still_allowed")
    assert batch["src_workload"] == "Deployment/batch"
    assert summary["flows"]["skipped"] == {
        "aggregated record without IP (network-level aggregation)": 1,
        "malformed line or not a Calico flow record": 1,
        "same connection reported by both ends (counted once, as reporter=src)": 1,
    }
    assert summary["flows"]["read"] == 5


def test_calico_deny_at_destination_wins(tmp_path):
    """Egress allowed at the source's node, ingress denied at the destination's: one
    connection, observed denied."""
    lines = [calico_record(WEB, API), calico_record(WEB, API, action="deny", reporter="dst"),
             # a dst record in another window is another report
             calico_record(WEB, API, reporter="dst", t=1717250000)]
    (tmp_path / "flows.jsonl").write_text("\n".join(lines) + "\n")
    rows, summary = simulate(tmp_path, tmp_path / "flows.jsonl")
    (r,) = rows
    assert (r["observed"], r["flows"]) == ("allowed", 2)  # one allowed window is enough
    (tmp_path / "deny.jsonl").write_text("\n".join(lines[:2]) + "\n")
    rows, summary = simulate(tmp_path, tmp_path / "deny.jsonl")
    (r,) = rows
    assert (r["observed"], r["flows"], r["change"]) == ("denied", 1, "newly_allowed")


def test_calico_elasticsearch_wrapper_and_array(tmp_path):
    rec = json.loads(calico_record(WEB, API))
    (tmp_path / "es.jsonl").write_text(json.dumps(
        {"_index": "tigera_secure_ee_flows", "_id": "x", "_source": rec}) + "\n")
    rows, summary = simulate(tmp_path, tmp_path / "es.jsonl", [API_POLICY])
    assert formats(summary) == {"calico"}
    assert [r["change"] for r in rows] == ["break"]
    (tmp_path / "arr.json").write_text(json.dumps([rec, rec], indent=2))
    rows, summary = simulate(tmp_path, tmp_path / "arr.json", [API_POLICY])
    assert [(r["change"], r["flows"]) for r in rows] == [("break", 2)]


def test_calico_space_delimited_bad_line(tmp_path):
    text = (CALICO / "tigera-docs-enterprise-flowlog-space-delimited-example.log").read_text()
    (tmp_path / "f.log").write_text(text.rstrip("\n") + "\n1528842551 1528842851 wep dev\n")
    rows, summary = simulate(tmp_path, tmp_path / "f.log")
    assert len(rows) == 1
    assert summary["flows"]["skipped"] == {"wrong number of fields (4, expected 24)": 1}


ANTREA_CSV_NEW = (  # the later layout: no service IP, appProtocolName and httpVals
    "1717243200,1717243260,10.1.0.5,10.2.0.9,40000,8443,TCP,web-7d9f8c6b5-x2x4z,shop,"
    "node-1,api-5c6d7f8b9-abcde,pay,node-2,10.96.0.10,8443,https,,,,,,,,,,,,,http,"
    '{"a":1,"b":2},')


def test_antrea_csv_file_alone_finds_a_break(tmp_path):
    deny_all = netpol("pay", "deny", {"podSelector": {}, "policyTypes": ["Ingress"]})
    (tmp_path / "antrea-flows.log").write_text(
        ANTREA_CSV_NEW + "\n\n1717243200,1717243260,10.1.0.5,garbage\n")
    rows, summary = simulate(tmp_path, tmp_path / "antrea-flows.log", [deny_all])
    assert formats(summary) == {"antrea"}
    (r,) = rows
    assert (r["src_pod"], r["dst_pod"], r["dst_namespace"]) == \
        ("web-7d9f8c6b5-x2x4z", "api-5c6d7f8b9-abcde", "pay")
    assert (r["observed"], r["change"]) == ("allowed", "break")
    assert summary["flows"]["skipped"] == {
        "wrong number of fields (4, expected 30, or 31 and more)": 1}


def test_antrea_json_labels_evaluate(tmp_path):
    rec = json.loads((ANTREA / "antctl-get-flowrecords-docs-example.json").read_text())[0]
    rec.update({"sourceIPv4Address": "10.1.0.5", "sourcePodName": "web-1",
                "sourcePodNamespace": "pay", "sourcePodLabels": '{"app":"web"}',
                "destinationIPv4Address": "10.2.0.9", "destinationPodName": "api-1",
                "destinationPodNamespace": "pay", "destinationPodLabels": '{"app":"api"}',
                "destinationTransportPort": 8443, "protocolIdentifier": 6})
    batch = dict(rec, sourcePodName="batch-1", sourcePodLabels='{"app":"batch"}',
                 sourceIPv4Address="10.1.0.7")
    dropped = dict(rec, sourcePodName="x-1", sourcePodLabels='{"app":"x"}',
                   sourceIPv4Address="10.1.0.8", ingressNetworkPolicyRuleAction=2,
                   ingressNetworkPolicyName="api", ingressNetworkPolicyNamespace="pay")
    (tmp_path / "records.json").write_text(json.dumps([rec, batch, dropped, 7], indent=2))
    rows, summary = simulate(tmp_path, tmp_path / "records.json", [API_POLICY])
    by_src = {r["src_pod"]: r for r in rows}
    assert by_src["web-1"]["change"] == "break"
    assert by_src["batch-1"]["change"] == "still_allowed"
    assert (by_src["x-1"]["observed"], by_src["x-1"]["change"]) == ("denied", "still_denied")
    assert by_src["x-1"]["observed_policies"] == "ingress drop by pay/api"
    assert summary["flows"]["skipped"] == {"malformed or not an Antrea flow record": 1}


# --- detection stays strict -----------------------------------------------------------------

def test_sniffers_do_not_claim_each_other():
    others = sorted((FIXTURES / "hubble").iterdir()) + sorted(FIXTURES.glob("*.log"))
    for f in others:
        head = f.read_text()
        assert not calico.sniff(head), f.name
        assert not antrea.sniff(head), f.name
    cloudwatch = json.dumps({"messageType": "DATA_MESSAGE", "logGroup": "g",
                             "logEvents": [{"id": "1", "message": "2 123 eni-1 ..."}]})
    assert not calico.sniff(cloudwatch) and not antrea.sniff(cloudwatch)
    for f, _, _ in SAMPLES:
        head = f.read_text()
        assert not hubble.sniff(head), f.name
        assert calico.sniff(head) != antrea.sniff(head), f.name
    assert not antrea.sniff((ANTREA / "flowlogger-csv-COLUMNS.txt").read_text())


def test_calico_policy_trace_becomes_observed_policies(tmp_path):
    sample = Path(__file__).parent / "fixtures" / "calico" / \
        "tigera-docs-enterprise-flowlog-example.json"
    write_policies(tmp_path / "p", [])
    r = CliRunner().invoke(main, ["--flows", str(sample), "--policies", str(tmp_path / "p"),
                                  "--out", str(tmp_path / "o.parquet"), "-q"])
    assert r.exit_code == 0, r.output
    rows = pq.read_table(tmp_path / "o.parquet").to_pylist()
    assert rows[0]["observed_policies"] == \
        "ns1/tier1.policy1 pass, policy-demo/default.access-nginx allow"


def test_antctl_table_output(tmp_path):
    rows, summary = simulate(tmp_path, ANTREA / "antctl-get-flowrecords-docs-example-table.txt",
                             [])
    assert summary["flows"]["skipped"] == {"command line, not a record": 1}
    assert len(rows) == 1
    r = rows[0]
    assert (r["src_pod"], r["dst_namespace"], r["dst_port"], r["protocol"], r["flows"]) == \
        ("flow-aggregator-67dc8ddfc8-zx8sg", "kube-system", 53, "UDP", 2)
