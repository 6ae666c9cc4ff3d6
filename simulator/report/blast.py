"""What a suggested fix changes besides its own group: a replay of the observed traffic
through the whole tiered candidate set with the fix applied.

Each fix becomes a policy set of its own (the candidate's policies with the edited ones
replaced and new ones added), judged only on the connections it can change, in two steps:

1. probe: the fix's new rules alone, with their policies' subjects. A connection can
   change only where a new rule matches (or might match) its key in the edited
   direction, or where a new NetworkPolicy starts to isolate its pod;
2. replay: those connections under the fixed set, in the edited directions only (the
   other direction's policies are untouched, so its candidate verdict stands). The set
   holds just the candidate policies that apply to those connections' pods there.

Many fixes replay in one evaluation (one set each, each judged only on its own
connections). This replaces the evaluation tables, so it runs after everything else has
read them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from .. import db, evaluate
from ..policy.ir import Direction, Policy
from ..policy.tables import register_policy_tables

# one evaluation holds at most this many fixes, and this many policies over all of them
BATCH_FIXES = 1024
BATCH_POLICIES = 20_000
ITEMS = 10


@dataclass
class Plan:
    """One fix to replay: the edited policies (same refs as in the candidate set), the
    new ones, and the rules it adds to the edited ones."""

    directions: set[Direction] = field(default_factory=set)
    replaced: dict[str, Policy] = field(default_factory=dict)
    added: list[Policy] = field(default_factory=list)
    new_rules: list[tuple[Policy, int]] = field(default_factory=list)  # (policy, rule pos)
    # new policies that select only pods their direction already isolates: they change no
    # isolation, so only the connections their rules match can change
    keeps_isolation: set[str] = field(default_factory=set)


def _probes(plans: list[Plan]) -> tuple[list[Policy], pa.Table]:
    """Per plan, its new rules each in a copy of its policy, and its new policies (which
    may isolate pods); each renamed so its hits name the plan."""
    probes: list[Policy] = []
    rows: dict[str, list[Any]] = {"ref": [], "plan": [], "isolating": []}
    for n, plan in enumerate(plans):
        items = [(p, (p.rules[i],), False) for p, i in plan.new_rules]
        items += [(p, p.rules, bool(p.isolates) and p.ref not in plan.keeps_isolation)
                  for p in plan.added]
        for k, (policy, rules, isolating) in enumerate(items):
            probe = dataclasses.replace(policy, name=f"~probe-{n}-{k}", rules=rules)
            probes.append(probe)
            rows["ref"].append(probe.ref)
            rows["plan"].append(n)
            rows["isolating"].append(isolating)
    return probes, pa.table({"ref": pa.array(rows["ref"], pa.string()),
                             "plan": pa.array(rows["plan"], pa.int32()),
                             "isolating": pa.array(rows["isolating"], pa.bool_())})


def _load(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
    con.register(f"{name}_arrow", table)
    db.run(con, f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_arrow")
    con.unregister(f"{name}_arrow")


PROBE_CONNS_SQL = """
-- every connection whose pod a probe's policy applies to, in the probe's direction
CREATE OR REPLACE TEMP TABLE probe_subject AS
SELECT DISTINCT m.plan, m.isolating, t.direction, t.ident_id
FROM target_ident t JOIN np_pol p ON p.pset = t.pset AND p.pol_id = t.pol_id
JOIN probe_map m ON m.ref = p.ref
WHERE t.pset = 'probe';

CREATE OR REPLACE TEMP TABLE probe_conns AS
SELECT c.* FROM conns c     -- by endpoint ids: no join of every connection to ep
WHERE c.src_ep IN (SELECT ep_id FROM ep WHERE kind = 'pod' AND ident_id IN (
           SELECT ident_id FROM probe_subject WHERE direction = 'egress'))
   OR c.dst_ep IN (SELECT ep_id FROM ep WHERE kind = 'pod' AND ident_id IN (
           SELECT ident_id FROM probe_subject WHERE direction = 'ingress'))
"""

AFFECTED_SQL = """
CREATE OR REPLACE TEMP TABLE plan_conns AS
WITH hit AS (       -- a new rule matches, or might match, the connection's key
    SELECT DISTINCT m.plan, h.conn_id
    FROM rule_hits h
    JOIN np_rule r ON r.rule_id = h.rule_id
    JOIN np_pol p ON p.pset = r.pset AND p.pol_id = r.pol_id
    JOIN probe_map m ON m.ref = p.ref
),
isolated AS (       -- a new NetworkPolicy isolates the connection's pod
    SELECT s.plan, c.conn_id
    FROM probe_conns c JOIN ep e ON e.ep_id = c.src_ep
    JOIN probe_subject s ON s.ident_id = e.ident_id AND s.direction = 'egress'
    WHERE s.isolating AND e.kind = 'pod'
    UNION
    SELECT s.plan, c.conn_id
    FROM probe_conns c JOIN ep e ON e.ep_id = c.dst_ep
    JOIN probe_subject s ON s.ident_id = e.ident_id AND s.direction = 'ingress'
    WHERE s.isolating AND e.kind = 'pod'
)
SELECT * FROM hit UNION SELECT * FROM isolated
"""

# the candidate policies that apply, in an edited direction, to a plan's connections
RELEVANT_SQL = """
SELECT DISTINCT a.plan, u.ref
FROM plan_conns a
JOIN conns c USING (conn_id)
JOIN ep s ON s.ep_id = c.src_ep
JOIN ep d ON d.ep_id = c.dst_ep
JOIN plan_dir pd ON pd.plan = a.plan
JOIN policy_use u ON u.pset = 'candidate' AND u.direction = pd.direction
    AND u.ident_id = CASE pd.direction WHEN 'egress' THEN s.ident_id ELSE d.ident_id END
"""

# per plan and connection: the verdict with the fix (the fixed set's in the edited
# directions, the candidate's in the other); what moved, by group
MOVED_SQL = """
INSERT INTO plan_moved
WITH judged AS (
    SELECT s.plan, s.conn_id, r.candidate::VARCHAR AS before,
        CASE WHEN pd_e.plan IS NOT NULL THEN pv.egress
             ELSE r.candidate_egress::VARCHAR END AS egress,
        CASE WHEN pd_i.plan IS NOT NULL THEN pv.ingress
             ELSE r.candidate_ingress::VARCHAR END AS ingress
    FROM fix_scope s
    JOIN conn_key ck USING (conn_id)
    JOIN pair_verdict pv ON pv.ekey = ck.ekey AND pv.ikey = ck.ikey AND pv.pset = s.pset
    JOIN result r USING (conn_id)
    LEFT JOIN plan_dir pd_e ON pd_e.plan = s.plan AND pd_e.direction = 'egress'
    LEFT JOIN plan_dir pd_i ON pd_i.plan = s.plan AND pd_i.direction = 'ingress'
),
after AS (
    SELECT *, CASE WHEN 'deny' IN (egress, ingress) THEN 'deny'
                   WHEN 'unknown' IN (egress, ingress) THEN 'unknown'
                   ELSE 'allow' END AS verdict
    FROM judged
)
SELECT plan, conn_id, CASE WHEN verdict = 'allow' THEN 'opens' ELSE 'closes' END AS effect
FROM after
WHERE (before <> 'allow' AND verdict = 'allow') OR (before = 'allow' AND verdict <> 'allow')
"""

SUMMARY_SQL = """
SELECT m.plan, m.effect, r.change, g.gkey,
    CASE WHEN r.src_kind = 'pod' THEN r.src_namespace || '/'
              || regexp_replace(coalesce(r.src_workload, r.src_pod), '^[^/]*/', '')
         ELSE '(' || r.src_kind || ')' END AS source,
    CASE WHEN r.dst_kind = 'pod' THEN r.dst_namespace || '/'
              || regexp_replace(coalesce(r.dst_workload, r.dst_pod), '^[^/]*/', '')
         ELSE '(' || r.dst_kind || ')' END AS destination,
    r.protocol || coalesce('/' || r.dst_port, '') AS port,
    count(*) AS connections, sum(r.flows)::BIGINT AS flows
FROM plan_moved m JOIN result r USING (conn_id)
LEFT JOIN report_members g USING (conn_id)
GROUP BY ALL
ORDER BY m.plan, flows DESC, source, destination, port
"""


def replay(con: duckdb.DuckDBPyConnection, plans: list[Plan],
           candidate: list[Policy]) -> dict[int, list[dict[str, Any]]]:
    """Per plan: the connections whose verdict the fix moves, grouped by report group
    (gkey), change class, workloads and port, with `effect` opens or closes."""
    if not plans:
        return {}
    probes, probe_map = _probes(plans)
    _load(con, "probe_map", probe_map)
    _load(con, "plan_dir", pa.table({
        "plan": pa.array([n for n, p in enumerate(plans) for _ in sorted(p.directions)],
                         pa.int32()),
        "direction": pa.array([d for p in plans for d in sorted(p.directions)],
                              pa.string())}))
    register_policy_tables(con, [("probe", probes)])
    evaluate.match_selectors(con)
    for statement in PROBE_CONNS_SQL.split(";\n\n"):
        db.run(con, statement)
    evaluate.judge(con, ["probe"], conns="probe_conns", hits_only=True)
    db.run(con, AFFECTED_SQL)
    relevant: dict[int, set[str]] = {}
    for plan, ref in con.execute(RELEVANT_SQL).fetchall():
        relevant.setdefault(int(plan), set()).add(ref)
    by_ref = {p.ref: p for p in candidate}
    sets: list[tuple[int, list[Policy]]] = []
    for n, plan in enumerate(plans):
        kept = [by_ref[r] for r in sorted(relevant.get(n, ())) if r not in plan.replaced
                and r in by_ref]
        sets.append((n, kept + list(plan.replaced.values()) + plan.added))
    db.run(con, "CREATE OR REPLACE TEMP TABLE plan_moved "
                "(plan INTEGER, conn_id BIGINT, effect VARCHAR)")
    for batch in _batches(sets):
        _replay_batch(con, batch)
    out: dict[int, list[dict[str, Any]]] = {}
    for row in db.rows(con, SUMMARY_SQL):
        out.setdefault(int(row.pop("plan")), []).append(row)
    return out


def _batches(sets: list[tuple[int, list[Policy]]]) -> list[list[tuple[int, list[Policy]]]]:
    batches: list[list[tuple[int, list[Policy]]]] = [[]]
    size = 0
    for item in sets:
        if batches[-1] and (len(batches[-1]) >= BATCH_FIXES
                            or size + len(item[1]) > BATCH_POLICIES):
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += len(item[1])
    return [b for b in batches if b]


def _replay_batch(con: duckdb.DuckDBPyConnection,
                  batch: list[tuple[int, list[Policy]]]) -> None:
    plans = [n for n, _ in batch]
    register_policy_tables(con, [(f"fix{n}", policies) for n, policies in batch])
    db.run(con, """
        CREATE OR REPLACE TEMP TABLE fix_scope AS
        SELECT plan, conn_id, 'fix' || plan AS pset FROM plan_conns
        WHERE plan IN (SELECT unnest($plans))""", {"plans": plans})
    db.run(con, """
        CREATE OR REPLACE TEMP TABLE fix_conns AS
        SELECT * FROM conns WHERE conn_id IN (SELECT conn_id FROM fix_scope)""")
    evaluate.evaluate(con, [f"fix{n}" for n in plans], conns="fix_conns", scope="fix_scope")
    db.run(con, MOVED_SQL)
