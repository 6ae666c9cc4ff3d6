"""`change` across tiers: a candidate that adds an admin Deny, removes a Pass or reorders
priorities moves exactly the connections whose verdict moves, and says which tier decided
before and after."""

from __future__ import annotations

from typing import Any

from worldfiles import cluster_policy, namespace, netpol, node, pod, vpc_record

A, B, C = "10.0.1.10", "10.0.1.20", "10.0.1.30"       # shop/web, db/pg, ops/agent
FLOWS = [vpc_record(A, B, 5432), vpc_record(C, B, 5432), vpc_record(A, B, 22),
         vpc_record(C, A, 8080)]


def objects() -> list[dict[str, Any]]:
    return [namespace("shop", {"team": "web"}), namespace("db", {"team": "data"}),
            namespace("ops", {"team": "ops"}),
            node("node-1", "172.16.0.1", ["10.0.1.0/24"]),
            pod("shop", "web", A, {"app": "web"}), pod("db", "pg", B, {"app": "pg"}),
            pod("ops", "agent", C, {"app": "agent"})]


def ns(name: str) -> dict[str, Any]:
    return {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


DB_NP = netpol("db", "pg-from-shop", {
    "podSelector": {}, "policyTypes": ["Ingress"],
    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "shop"}}}], "ports": [{"port": 5432}]}]})


def anp(name: str, priority: int, rules: list[dict[str, Any]], subject: str = "db"
        ) -> dict[str, Any]:
    return cluster_policy("AdminNetworkPolicy", name, {
        "priority": priority, "subject": ns(subject), "ingress": rules})


def changes(run: Any) -> dict[tuple[str, str, int], tuple[str, str | None, str | None]]:
    return {(r["src_ip"], r["dst_ip"], r["dst_port"]):
            (r["change"], r["baseline_tier"], r["candidate_tier"]) for r in run.rows}


def test_an_added_admin_deny_breaks_only_what_it_matches(simulate_world):
    deny_ops = anp("no-ops", 10, [{"action": "Deny", "from": [ns("ops")]}])
    run = simulate_world(objects(), [DB_NP, deny_ops], FLOWS, baseline=[DB_NP])
    got = changes(run)
    # ops -> db was denied by the NetworkPolicy and is now denied by the admin tier
    assert got[(C, B, 5432)] == ("still_denied", "networkpolicy", "admin")
    assert got[(A, B, 5432)] == ("still_allowed", "networkpolicy", "networkpolicy")
    assert got[(A, B, 22)] == ("still_denied", "networkpolicy", "networkpolicy")
    assert got[(C, A, 8080)] == ("still_allowed", "default", "default")
    # the same Deny over shop: web's own traffic to db is not its subject's ingress
    deny_web_in = anp("no-ops-into-shop", 10, [{"action": "Deny", "from": [ns("ops")]}],
                      subject="shop")
    got = changes(simulate_world(objects(), [DB_NP, deny_web_in], FLOWS, baseline=[DB_NP]))
    assert got[(C, A, 8080)] == ("break", "default", "admin")
    assert [k for k, v in got.items() if v[0] == "break"] == [(C, A, 8080)]


def test_removing_a_pass_hands_the_traffic_to_the_next_rule(simulate_world):
    with_pass = anp("guard", 10, [{"action": "Pass", "from": [ns("shop")]},
                                  {"action": "Deny", "from": [{"namespaces": {}}]}])
    without = anp("guard", 10, [{"action": "Deny", "from": [{"namespaces": {}}]}])
    got = changes(simulate_world(objects(), [DB_NP, without], FLOWS,
                                 baseline=[DB_NP, with_pass]))
    # shop -> db:5432 was passed to the NetworkPolicy that admits it: now denied
    assert got[(A, B, 5432)] == ("break", "networkpolicy", "admin")
    # shop -> db:22 was passed and denied by the NetworkPolicy: denied either way
    assert got[(A, B, 22)] == ("still_denied", "networkpolicy", "admin")
    assert got[(C, B, 5432)] == ("still_denied", "admin", "admin")
    assert [k for k, v in got.items() if v[0] == "break"] == [(A, B, 5432)]


def test_reordering_priorities_swaps_which_policy_decides(simulate_world):
    allow = [{"action": "Allow", "from": [ns("ops")]}]
    deny = [{"action": "Deny", "from": [{"namespaces": {}}]}]
    before = [DB_NP, anp("allow-ops", 5, allow), anp("deny-all", 10, deny)]
    after = [DB_NP, anp("allow-ops", 15, allow), anp("deny-all", 10, deny)]
    run = simulate_world(objects(), after, FLOWS, baseline=before)
    got = changes(run)
    assert got[(C, B, 5432)] == ("break", "admin", "admin")
    # allow-ops never matched shop: deny-all decided its traffic before and after
    assert got[(A, B, 5432)] == ("still_denied", "admin", "admin")
    assert [k for k, v in got.items() if v[0] == "break"] == [(C, B, 5432)]
    row = run.conn(C, B, 5432)
    assert 'AdminNetworkPolicy deny-all (priority 10) ingress rule 0' in row["candidate_reason"]
    assert 'AdminNetworkPolicy allow-ops (priority 5) ingress rule 0' in row["baseline_reason"]
    # the same priority for both: undefined where they disagree, never picked silently
    tied = [DB_NP, anp("allow-ops", 10, allow), anp("deny-all", 10, deny)]
    run = simulate_world(objects(), tied, FLOWS, baseline=before)
    row = run.conn(C, B, 5432)
    assert row["candidate"] == "unknown" and row["change"] == "unresolved"
    assert "ambiguous priority" in row["candidate_reason"]
