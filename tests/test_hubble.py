"""Cilium Hubble flows: real samples, identity from the flow itself, and a break found from
a Hubble file alone."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from worldfiles import namespace, netpol, pod, write_cluster, write_policies

from simulator.cli import main

HUBBLE = Path(__file__).parent / "fixtures" / "hubble"


def run(*args: Any, input: str | None = None) -> tuple[Any, list[dict[str, Any]], dict]:
    out = Path(args[args.index("--out") + 1]) if "--out" in args else None
    js = Path(args[args.index("--json") + 1]) if "--json" in args else None
    result = CliRunner().invoke(main, [str(a) for a in args], input=input)
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out).to_pylist() if out else []
    summary = json.loads(js.read_text())["summary"] if js else {}
    return result, rows, summary


def endpoint(ns: str | None, name: str | None, labels: list[str],
             workload: str | None = None) -> dict[str, Any]:
    ep: dict[str, Any] = {"labels": labels}
    if ns:
        ep["namespace"] = ns
    if name:
        ep["pod_name"] = name
    if workload:
        ep["workloads"] = [{"name": workload, "kind": "Deployment"}]
    return ep


def flow(src: str, dst: str, sport: int, dport: int, source: dict, destination: dict, *,
         verdict: str = "FORWARDED", reply: bool | None = False, flags: dict | None = None,
         point: str = "TO_ENDPOINT", t: str = "2024-06-01T12:00:00.100Z",
         wrapped: bool = True) -> str:
    f: dict[str, Any] = {
        "time": t, "verdict": verdict,
        "IP": {"source": src, "destination": dst, "ipVersion": "IPv4"},
        "l4": {"TCP": {"source_port": sport, "destination_port": dport,
                       "flags": flags or {"SYN": True}}},
        "source": source, "destination": destination, "Type": "L3_L4",
        "node_name": "kind/worker", "event_type": {"type": 4},
        "trace_observation_point": point,
    }
    if reply is not None:
        f["is_reply"] = reply
    if verdict == "DROPPED":
        f["drop_reason_desc"] = "POLICY_DENIED"
        f["event_type"] = {"type": 1, "sub_type": 133}
    return json.dumps({"flow": f, "node_name": "kind/worker", "time": t} if wrapped else f)


WEB = endpoint("shop", "web-7d9f8c6b5-x2x4z",
               ["k8s:app=web", "k8s:io.kubernetes.pod.namespace=shop",
                "k8s:io.cilium.k8s.namespace.labels.team=storefront",
                "k8s:io.cilium.k8s.policy.serviceaccount=web"], "web")
API = endpoint("pay", "api-5c6d7f8b9-abcde",
               ["k8s:app=api", "k8s:io.kubernetes.pod.namespace=pay",
                "k8s:io.cilium.k8s.namespace.labels.team=payments"], "api")
BATCH = endpoint("pay", "batch-0", ["k8s:app=batch", "k8s:io.kubernetes.pod.namespace=pay",
                                    "k8s:io.cilium.k8s.namespace.labels.team=payments"])
WORLD = endpoint(None, None, ["reserved:world"])
HOST = endpoint(None, None, ["reserved:host"])

API_POLICY = netpol("pay", "api", {"podSelector": {"matchLabels": {"app": "api"}}, "ingress": [
    {"from": [{"namespaceSelector": {"matchLabels": {"team": "payments"}}}],
     "ports": [{"port": 8443}]}]})


def test_hubble_file_alone_finds_a_break(tmp_path):
    lines = [
        flow("10.1.0.5", "10.2.0.9", 40000, 8443, WEB, API),
        # the same SYN seen again where it left the sender: one packet, one record
        flow("10.1.0.5", "10.2.0.9", 40000, 8443, WEB, API, point="TO_STACK"),
        flow("10.2.0.9", "10.1.0.5", 8443, 40000, API, WEB, reply=True,
             flags={"SYN": True, "ACK": True}),
        flow("10.2.0.7", "10.2.0.9", 41000, 8443, BATCH, API),
        flow("203.0.113.9", "10.2.0.9", 42000, 8443, WORLD, API, verdict="DROPPED",
             reply=None),
        flow("10.0.0.1", "10.2.0.9", 43000, 8443, HOST, API),
    ]
    (tmp_path / "flows.json").write_text("\n".join(lines) + "\n")
    write_policies(tmp_path / "p", [API_POLICY])
    _, rows, summary = run("--flows", tmp_path / "flows.json", "--policies", tmp_path / "p",
                           "--out", tmp_path / "o.parquet", "--json", tmp_path / "o.json",
                           "-q")
    by_src = {r["src_ip"]: r for r in rows}
    assert set(by_src) == {"10.1.0.5", "10.2.0.7", "203.0.113.9", "10.0.0.1"}
    web = by_src["10.1.0.5"]
    assert (web["src_kind"], web["dst_kind"], web["dst_port"]) == ("pod", "pod", 8443)
    assert (web["src_workload"], web["dst_workload"]) == ("Deployment/web", "Deployment/api")
    assert (web["flows"], web["reply_flows"]) == (2, 1)  # duplicate observation dropped
    assert web["change"] == "break"
    assert "isolated by pay/api" in web["candidate_reason"]
    # namespace labels come from io.cilium.k8s.namespace.labels.*
    assert by_src["10.2.0.7"]["change"] == "still_allowed"
    world = by_src["203.0.113.9"]
    assert (world["src_kind"], world["observed"], world["change"]) == \
        ("external", "denied", "still_denied")
    host = by_src["10.0.0.1"]
    assert (host["src_kind"], host["candidate"]) == ("node", "allow")  # the pod's own node
    assert summary["flows"]["read"] == 6
    assert summary["flows"]["skipped"] == {"same packet at another observation point": 1}


def test_real_samples_read_without_crashing(tmp_path):
    """Every sample is judged, or (only events that are not flows) refused as nothing to
    judge; the accounting identity over every fixture is in test_honesty."""
    write_policies(tmp_path / "p", [])
    for f in sorted(HUBBLE.iterdir()):
        result = CliRunner().invoke(main, ["--flows", str(f), "--policies",
                                           str(tmp_path / "p"), "-q"])
        assert result.exit_code == 0 or (
            result.exit_code == 2 and "nothing to judge" in result.output), result.output


def test_sample_identity_and_replies():
    """basic-sample-10-flows: bookinfo pods talking through the node (reserved:host);
    half the packets are replies, which fold into their connections."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        write_policies(t / "p", [])
        _, rows, summary = run("--flows", HUBBLE / "basic-sample-10-flows.json",
                               "--policies", t / "p", "--out", t / "o.parquet",
                               "--json", t / "o.json", "-q")
    assert summary["flows"]["read"] == 10
    assert sum(r["flows"] for r in rows) == 10
    assert sum(r["reply_flows"] for r in rows) == 5
    namespaces = {r["src_namespace"] for r in rows} | {r["dst_namespace"] for r in rows}
    assert "bookinfo" in namespaces
    assert {r["src_kind"] for r in rows} | {r["dst_kind"] for r in rows} >= {"pod", "node"}


def test_l7_events_are_counted_not_replayed(tmp_path):
    """A file of L7 events only holds no flow to replay: nothing to judge, said with the
    count, never a green "nothing would break"."""
    write_policies(tmp_path / "p", [])
    result = CliRunner().invoke(main, ["--flows", str(HUBBLE / "basic-sample-5-dns-flows.json"),
                                       "--policies", str(tmp_path / "p")])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"simulate: error: {HUBBLE / 'basic-sample-5-dns-flows.json'}: nothing to judge: 0 of "
        "5 records evaluated (L7 event (DNS/HTTP/Kafka), counted not replayed ×5)"]


def test_bare_and_wrapped_lines_are_the_same_flow(tmp_path):
    write_policies(tmp_path / "p", [])
    _, rows, summary = run("--flows", HUBBLE / "cilium-printer-test-json-vs-jsonpb.jsonl",
                           "--policies", tmp_path / "p", "--out", tmp_path / "o.parquet",
                           "--json", tmp_path / "o.json", "-q")
    assert len(rows) == 1
    assert (rows[0]["src_ip"], rows[0]["dst_ip"], rows[0]["dst_port"]) == \
        ("1.1.1.1", "2.2.2.2", 8080)
    assert rows[0]["observed"] == "denied"


def test_field_masked_exporter_flow_gets_labels_from_the_snapshot(tmp_path):
    """The exporter sample keeps only namespace and pod_name: with --cluster, the pods'
    labels come from the snapshot, so the policy's podSelector can be evaluated."""
    objs = [namespace("default"),
            pod("default", "xwing", "10.244.1.60", {"class": "xwing"}, []),
            pod("default", "deathstar-7848d6c4d5-th9v2", "10.244.1.5",
                {"class": "deathstar", "org": "empire", "pod-template-hash": "7848d6c4d5"},
                [(None, 80, "TCP")], owner=("ReplicaSet", "deathstar-7848d6c4d5"))]
    write_cluster(tmp_path / "c.json", objs)
    pol = netpol("default", "rule1", {"podSelector": {"matchLabels": {"class": "deathstar"}},
                                      "ingress": [{"from": [{"podSelector": {
                                          "matchLabels": {"org": "empire"}}}]}]})
    write_policies(tmp_path / "p", [pol])
    _, rows, _ = run("--flows", HUBBLE / "cilium-docs-exporter-dropped.jsonl", "--cluster",
                     tmp_path / "c.json", "--policies", tmp_path / "p",
                     "--out", tmp_path / "o.parquet", "-q")
    xwing = [r for r in rows if r["src_pod"] == "xwing"]
    assert len(xwing) == 1
    assert xwing[0]["dst_workload"] == "Deployment/deathstar"
    assert xwing[0]["candidate"] == "deny"
    assert xwing[0]["observed"] == "denied"
    assert xwing[0]["change"] == "still_denied"


def test_gzip_and_stdin(tmp_path):
    text = (HUBBLE / "aks-acns-docker-provider-flows.jsonl").read_text()
    with gzip.open(tmp_path / "events.log.gz", "wt") as fh:
        fh.write(text)
    write_policies(tmp_path / "p", [])
    _, rows_gz, _ = run("--flows", tmp_path / "events.log.gz", "--policies", tmp_path / "p",
                        "--out", tmp_path / "a.parquet", "-q")
    _, rows_in, _ = run("--flows", "-", "--policies", tmp_path / "p",
                        "--out", tmp_path / "b.parquet", "-q", input=text)
    assert rows_gz == rows_in
    # two reply packets and one forward packet of one connection to kapinger-good:8080
    assert len(rows_gz) == 1
    assert (rows_gz[0]["dst_port"], rows_gz[0]["flows"]) == (8080, 3)
    assert rows_gz[0]["src_workload"] == "Deployment/kapinger-bad"


def test_forced_format_and_unknown_format(tmp_path):
    write_policies(tmp_path / "p", [])
    (tmp_path / "f.txt").write_text((HUBBLE / "basic-sample-10-flows.json").read_text())
    run("--flows", tmp_path / "f.txt", "--flows-format", "hubble", "--policies",
        tmp_path / "p", "-q")
    r = CliRunner().invoke(main, ["--flows", str(tmp_path / "f.txt"), "--flows-format",
                                  "netflow", "--policies", str(tmp_path / "p")])
    assert r.exit_code == 2 and "--flows-format 'netflow': not a flow format" in r.output
    (tmp_path / "junk.txt").write_text("hello world\n")
    r = CliRunner().invoke(main, ["--flows", str(tmp_path / "junk.txt"), "--policies",
                                  str(tmp_path / "p")])
    assert r.exit_code == 2 and "junk.txt" in r.output and "unknown flow file format" in r.output


@pytest.mark.parametrize("bad", ["{not json", '{"flow": {"verdict": "FORWARDED"}}'])
def test_bad_lines_are_skipped_and_counted(tmp_path, bad):
    good = flow("10.1.0.5", "10.2.0.9", 40000, 8443, WEB, API)
    (tmp_path / "f.json").write_text(good + "\n" + bad + "\n")
    write_policies(tmp_path / "p", [])
    _, rows, summary = run("--flows", tmp_path / "f.json", "--policies", tmp_path / "p",
                           "--out", tmp_path / "o.parquet", "--json", tmp_path / "o.json",
                           "-q")
    assert len(rows) == 1
    assert summary["flows"]["read"] == summary["flows"]["evaluated"] + sum(
        summary["flows"]["skipped"].values())
    assert sum(summary["flows"]["skipped"].values()) == 1


@pytest.mark.parametrize("sample", ["basic-sample-10-flows.json",
                                    "aks-acns-docker-provider-flows.jsonl"])
def test_saved_flows_replay_to_identical_results(tmp_path, sample):
    write_policies(tmp_path / "p", [netpol("default", "deny", {"podSelector": {}})])
    _, first, _ = run("--flows", HUBBLE / sample, "--policies", tmp_path / "p",
                      "--save-flows", tmp_path / "saved.parquet",
                      "--out", tmp_path / "a.parquet", "-q")
    _, again, _ = run("--flows", tmp_path / "saved.parquet", "--policies", tmp_path / "p",
                      "--out", tmp_path / "b.parquet", "-q")
    key = lambda r: (r["src_ip"], r["dst_ip"], r["dst_port"], r["protocol"])  # noqa: E731
    assert sorted(first, key=key) == sorted(again, key=key)


def test_dataplane_policy_verdicts_are_kept(tmp_path):
    f = json.loads(flow("10.1.0.5", "10.2.0.9", 40000, 8443, WEB, API, verdict="DROPPED"))
    f["flow"]["ingress_denied_by"] = [{"name": "api", "namespace": "pay",
                                       "kind": "NetworkPolicy"}]
    g = json.loads(flow("10.2.0.7", "10.2.0.9", 41000, 8443, BATCH, API))
    g["flow"]["ingress_allowed_by"] = [{"name": "api", "namespace": "pay"}]
    g["flow"]["egress_allowed_by"] = [{"name": "allow-all"}]
    (tmp_path / "f.json").write_text(json.dumps(f) + "\n" + json.dumps(g) + "\n")
    write_policies(tmp_path / "p", [API_POLICY])
    _, rows, _ = run("--flows", tmp_path / "f.json", "--policies", tmp_path / "p",
                     "--out", tmp_path / "o.parquet", "-q")
    by_src = {r["src_ip"]: r for r in rows}
    assert by_src["10.1.0.5"]["observed_policies"] == "ingress denied by pay/api"
    assert by_src["10.2.0.7"]["observed_policies"] == \
        "ingress allowed by pay/api; egress allowed by allow-all"
    # our explanation names the same policy
    assert "pay/api" in by_src["10.1.0.5"]["candidate_reason"]


def test_conflicts_between_flows_and_snapshot_are_reported(tmp_path):
    objs = [namespace("shop"), namespace("pay"),
            pod("shop", "web-7d9f8c6b5-x2x4z", "10.1.0.5", {"app": "web"}, []),
            pod("pay", "api-5c6d7f8b9-abcde", "10.2.0.9", {"app": "payments-api"},
                [(None, 8443, "TCP")]),
            pod("pay", "other", "10.2.0.7", {"app": "other"}, [])]
    write_cluster(tmp_path / "c.json", objs)
    lines = [flow("10.1.0.5", "10.2.0.9", 40000, 8443, WEB, API),
             flow("10.2.0.7", "10.2.0.9", 41000, 8443, BATCH, API)]
    (tmp_path / "f.json").write_text("\n".join(lines) + "\n")
    write_policies(tmp_path / "p", [API_POLICY])
    result, _, summary = run("--flows", tmp_path / "f.json", "--cluster", tmp_path / "c.json",
                             "--policies", tmp_path / "p", "--json", tmp_path / "o.json")
    conflicts = summary["identity_conflicts"]
    assert conflicts["pods"] == 2
    assert "pay/api-5c6d7f8b9-abcde: label app: flow says api, snapshot payments-api" in \
        conflicts["examples"]
    assert any("pay/batch-0: address 10.2.0.7 belongs to pay/other" in e
               for e in conflicts["examples"])
    assert "Identity conflicts: 2 pods" in result.output


def test_reply_flag_that_contradicts_the_ports_is_not_believed(tmp_path):
    """Real captures mark some replies is_reply=false: a packet from the server's port
    8443 to the client's ephemeral port is a reply whatever the flag says."""
    lines = [flow("10.1.0.5", "10.2.0.9", 40000, 8443, WEB, API),
             flow("10.2.0.9", "10.1.0.5", 8443, 40000, API, WEB, reply=False,
                  flags={"ACK": True}),
             flow("10.2.0.9", "10.1.0.5", 8443, 40001, API, WEB, reply=None,
                  flags={"ACK": True})]
    (tmp_path / "f.json").write_text("\n".join(lines) + "\n")
    write_policies(tmp_path / "p", [])
    _, rows, _ = run("--flows", tmp_path / "f.json", "--policies", tmp_path / "p",
                     "--out", tmp_path / "o.parquet", "-q")
    assert len(rows) == 1
    assert (rows[0]["src_ip"], rows[0]["dst_port"]) == ("10.1.0.5", 8443)
    assert (rows[0]["flows"], rows[0]["reply_flows"]) == (3, 2)
    assert rows[0]["direction"] == "flow flag"  # the request's own flag decides the row


def test_post_dnat_flow_keeps_its_backend_and_gains_the_service(tmp_path):
    # Hubble reports the backend's address after DNAT and names the Service it was sent
    # to; a reply names it as the source's Service
    req = json.loads(flow("10.1.0.5", "10.2.0.9", 40000, 8443, WEB, API))
    req["flow"]["destination_service"] = {"name": "api", "namespace": "pay"}
    rep = json.loads(flow("10.2.0.9", "10.1.0.5", 8443, 40000, API, WEB, reply=True,
                          flags={"SYN": True, "ACK": True}))
    rep["flow"]["source_service"] = {"name": "api", "namespace": "pay"}
    plain = flow("10.2.0.7", "10.2.0.9", 41000, 8443, BATCH, API)
    (tmp_path / "flows.json").write_text("\n".join([json.dumps(req), json.dumps(rep),
                                                    plain]) + "\n")
    write_policies(tmp_path / "p", [API_POLICY])
    _, rows, _ = run("--flows", tmp_path / "flows.json", "--policies", tmp_path / "p",
                     "--out", tmp_path / "o.parquet", "-q")
    by_src = {r["src_ip"]: r for r in rows}
    web = by_src["10.1.0.5"]
    assert (web["dst_ip"], web["dst_pod"], web["dst_service"]) == \
        ("10.2.0.9", "api-5c6d7f8b9-abcde", "pay/api")
    assert web["change"] == "break"   # judged at the backend it reached
    assert by_src["10.2.0.7"]["dst_service"] is None


def test_pod_known_only_by_labels_is_named_after_its_workload(tmp_path):
    # a remote pod Hubble knows by its identity labels only: no pod name, no workloads
    page = endpoint(None, None, ["k8s:app=productpage", "k8s:version=v1",
                                 "k8s:io.kubernetes.pod.namespace=bookinfo"])
    lines = [flow("10.1.0.5", "10.3.0.7", 40000, 9080, WEB, page)]
    (tmp_path / "flows.json").write_text("\n".join(lines) + "\n")
    deny = netpol("bookinfo", "deny", {"podSelector": {}})
    write_policies(tmp_path / "p", [deny])
    _, rows, _ = run("--flows", tmp_path / "flows.json", "--policies", tmp_path / "p",
                     "--out", tmp_path / "o.parquet", "--report", tmp_path / "r.html", "-q")
    (row,) = rows
    assert (row["dst_namespace"], row["dst_pod"], row["dst_workload"]) == \
        ("bookinfo", None, "productpage")
    html = (tmp_path / "r.html").read_text()
    assert "bookinfo/productpage" in html and "pod, name not recorded" in html
    assert "0 pods" not in html and "bookinfo/<" not in html
