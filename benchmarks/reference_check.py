"""The test suite's per-flow reference evaluator (tests/reference.py) against `simulate`.

    python benchmarks/reference_check.py --data DIR --conns OUT/conns.parquet [--sample 2000]
        [--flow-sample 300] [--json FILE]

Two things, on one generated workload (cluster.json, current/, candidate/, flows.parquet):

* equality: a seeded sample of the connections `simulate` wrote (`--conns`, the table of the
  optimized path) is re-evaluated one at a time by the reference under both policy sets; the
  verdict, the per-direction verdicts and the admitting rules must be the same (the isolating
  policies too, where a direction denies; not the admitting rules of ingress from the pod's
  own node, which the reference admits before looking at any rule). Connections the
  reference cannot judge (an unresolved or Service endpoint, no destination port) are
  counted, not compared.
* the obvious approach's cost: a seeded sample of flow *records* evaluated one at a time under
  both sets, timed per record. Two variants: the reference as written (it finds a pod by
  scanning every pod, parsing addresses), and the same with an address -> pod dictionary,
  which is what a reasonable per-flow script would do; the second is the one the speed-up
  is computed against (it is the faster, so the claim is the conservative one).

Prints and writes (with --json) a JSON document. Runs in its own process so that the
benchmark driver stays small (see all.py on peak RSS).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import reference  # noqa: E402

PROTO_NAMES = {6: "TCP", 17: "UDP", 132: "SCTP", 1: "ICMP", 58: "ICMPv6"}


POLICY_KINDS = ("NetworkPolicy", "AdminNetworkPolicy", "BaselineAdminNetworkPolicy",
                "ClusterNetworkPolicy")


def load_policies(directory: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(directory.rglob("*")):
        if path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            items = doc.get("items", []) if doc.get("kind") == "List" else [doc]
            out.extend(i for i in items if i.get("kind") in POLICY_KINDS)
    return out


def load_world(data: Path, policy_dir: str) -> reference.World:
    doc = json.loads((data / "cluster.json").read_text())
    namespaces: dict[str, dict[str, str]] = {}
    nodes: dict[str, str] = {}
    node_labels: dict[str, dict[str, str]] = {}
    pods: list[reference.Pod] = []
    for item in doc["items"]:
        kind, meta = item["kind"], item.get("metadata", {})
        if kind == "Namespace":
            namespaces[meta["name"]] = dict(meta.get("labels") or {})
        elif kind == "Node":
            node_labels[meta["name"]] = dict(meta.get("labels") or {})
            for a in item.get("status", {}).get("addresses", []):
                if a.get("type") == "InternalIP":
                    nodes[meta["name"]] = a["address"]
        elif kind == "Pod":
            spec, status = item.get("spec", {}), item.get("status", {})
            ips = tuple(p["ip"] for p in status.get("podIPs") or []) or (
                (status["podIP"],) if status.get("podIP") else ())
            ports = tuple(
                reference.ContainerPort(p.get("name"), p["containerPort"], p.get("protocol", "TCP"))
                for c in spec.get("containers", []) for p in c.get("ports") or [])
            pods.append(reference.Pod(meta.get("namespace", "default"), meta["name"], ips,
                                      dict(meta.get("labels") or {}), ports,
                                      bool(spec.get("hostNetwork")),
                                      spec.get("nodeName", "")))
    return reference.world_from_parts(namespaces, pods, nodes,
                                      load_policies(data / policy_dir), node_labels)


class FastLookup:
    """resolve_pod / is_resident_node with dictionaries instead of scans: patched into the
    reference module for the 'reasonable per-flow script' variant (semantics unchanged for
    canonical addresses, which is what the generated flows carry)."""

    def __init__(self, world: reference.World) -> None:
        self.pod_of = {ip: p for p in world.pods if not p.host_network for ip in p.ips}
        self.orig = (reference.resolve_pod, reference.is_resident_node)

    def __enter__(self) -> FastLookup:
        pod_of = self.pod_of
        reference.resolve_pod = lambda world, ip: pod_of.get(ip)
        reference.is_resident_node = lambda world, ip, pod: world.nodes.get(pod.node) == ip
        return self

    def __exit__(self, *exc: Any) -> None:
        reference.resolve_pod, reference.is_resident_node = self.orig


def _rules(entries: list[str] | None) -> list[str]:
    # the engine writes "ns/name ingress[0]", the reference "ns/name#ingress[0]"
    return sorted(e.replace(" ", "#", 1) for e in entries or [])


def compare(data: Path, conns: Path, sample: int, seed: int) -> dict[str, Any]:
    worlds = {"candidate": load_world(data, "candidate"), "baseline": load_world(data, "current")}
    src = str(conns).replace("'", "''")
    con = duckdb.connect()
    total = con.execute(f"SELECT count(*) FROM read_parquet('{src}')").fetchall()[0][0]
    cur = con.execute(f"""
        SELECT * FROM read_parquet('{src}')
        ORDER BY hash(src_ip, dst_ip, dst_port, protocol, {seed}) LIMIT {int(sample)}""")
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    con.close()
    judged = skipped = 0
    mismatches: list[dict[str, Any]] = []
    fields = own_node = 0
    with FastLookup(worlds["candidate"]):  # same pods in both worlds
        for r in rows:
            if (r["src_kind"] not in ("pod", "node", "external")
                    or r["dst_kind"] not in ("pod", "node", "external")
                    or r["dst_port"] is None
                    or r["protocol"] not in ("TCP", "UDP", "SCTP")):
                skipped += 1
                continue
            judged += 1
            for pset, world in worlds.items():
                v = reference.evaluate(world, r["src_ip"], r["dst_ip"], int(r["dst_port"]),
                                       r["protocol"])
                def word(side: reference.Side) -> str:
                    return "unknown" if side.unknown else "allow" if side.allowed else "deny"

                want = {
                    "verdict": v.word,
                    "egress": word(v.egress),
                    "ingress": word(v.ingress),
                    "egress_tier": v.egress.tier,
                    "ingress_tier": v.ingress.tier,
                    "egress_allowed_by": sorted(v.egress.admitted_by),
                    "ingress_allowed_by": sorted(v.ingress.admitted_by),
                }
                got = {
                    "verdict": r[pset],
                    "egress": r[f"{pset}_egress"],
                    "ingress": r[f"{pset}_ingress"],
                    "egress_tier": r[f"{pset}_egress_tier"],
                    "ingress_tier": r[f"{pset}_ingress_tier"],
                    "egress_allowed_by": _rules(r[f"{pset}_egress_allowed_by"]),
                    "ingress_allowed_by": _rules(r[f"{pset}_ingress_allowed_by"]),
                }
                # the admitting NetworkPolicy rules are the explanation only where the
                # NetworkPolicy tier decided (the engine lists them whatever decided)
                for d, side in (("egress", v.egress), ("ingress", v.ingress)):
                    if side.tier != "networkpolicy":
                        del want[f"{d}_allowed_by"], got[f"{d}_allowed_by"]
                # A pod's own node is admitted before any rule is looked at: the reference
                # then names no admitting rule, the engine still lists the rules that match
                # (verdicts agree; only the lists are not comparable)
                dst_pod = reference.resolve_pod(world, r["dst_ip"])
                if dst_pod is not None and reference.is_resident_node(world, r["src_ip"],
                                                                       dst_pod):
                    own_node += 1
                    want.pop("ingress_allowed_by", None)
                    got.pop("ingress_allowed_by", None)
                for d, side in (("egress", v.egress), ("ingress", v.ingress)):
                    # a side the NetworkPolicy tier denies names every isolating policy
                    if not side.allowed and side.tier == "networkpolicy":
                        want[f"{d}_isolated_by"] = sorted(side.isolated_by)
                        got[f"{d}_isolated_by"] = sorted(r[f"{pset}_{d}_isolated_by"] or [])
                fields += len(want)
                diff = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
                if diff:
                    mismatches.append({"pset": pset, "src_ip": r["src_ip"],
                                       "dst_ip": r["dst_ip"], "dst_port": int(r["dst_port"]),
                                       "protocol": r["protocol"],
                                       "engine_vs_reference": diff})
    return {"connections_in_table": total, "sampled": len(rows), "compared": judged,
            "not_comparable": skipped, "fields_compared": fields,
            "own_node_sides": own_node,
            "mismatches": len(mismatches), "mismatch_examples": mismatches[:5]}


def per_flow_cost(data: Path, n: int, seed: int, fast: bool) -> dict[str, Any]:
    """Seconds per flow record of evaluating it under both sets with the reference."""
    worlds = [load_world(data, "candidate"), load_world(data, "current")]
    path = str(data / "flows.parquet").replace("'", "''")
    con = duckdb.connect()
    recs = con.execute(f"""
        SELECT srcaddr, dstaddr, dstport, protocol FROM read_parquet('{path}')
        USING SAMPLE reservoir({int(n)} ROWS) REPEATABLE ({seed})""").fetchall()
    con.close()
    recs = [(s, d, int(p), PROTO_NAMES.get(int(pr), str(pr))) for s, d, p, pr in recs]
    random.Random(seed).shuffle(recs)
    lookup = FastLookup(worlds[0]) if fast else None
    if lookup:
        lookup.__enter__()
    try:
        t0 = time.perf_counter()
        denied = 0
        for s, d, p, pr in recs:
            for w in worlds:
                denied += not reference.evaluate(w, s, d, p, pr).allowed
        secs = time.perf_counter() - t0
    finally:
        if lookup:
            lookup.__exit__()
    return {"records": len(recs), "seconds": secs, "per_record_s": secs / max(1, len(recs)),
            "denied_verdicts": denied}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--conns", type=Path, help="simulate's connections table (Parquet)")
    ap.add_argument("--sample", type=int, default=2000, help="connections compared")
    ap.add_argument("--flow-sample", type=int, default=2000,
                    help="records timed (dictionary lookup variant)")
    ap.add_argument("--slow-sample", type=int, default=20,
                    help="records timed (reference as written)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    out: dict[str, Any] = {}
    if args.conns:
        out["equality"] = compare(args.data, args.conns, args.sample, args.seed)
    if args.flow_sample:
        out["per_flow_fast"] = per_flow_cost(args.data, args.flow_sample, args.seed, True)
    if args.slow_sample:
        out["per_flow_as_written"] = per_flow_cost(args.data, args.slow_sample, args.seed, False)
    text = json.dumps(out, indent=2, default=str)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
