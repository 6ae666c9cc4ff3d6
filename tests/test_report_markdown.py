"""The pull-request comment: bounded in size whatever the input, and inert whatever the
cluster's names contain."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from simulator.cli import main
from simulator.report.markdown import LIMIT, render_markdown

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("md") / "demo.json"
    r = CliRunner().invoke(main, [
        "--flows", str(ROOT / "flows/demo-vpc.parquet"),
        "--cluster", str(ROOT / "flows/demo-cluster.json"),
        "--policies", str(ROOT / "policies/candidate"),
        "--baseline", str(ROOT / "policies/current"), "--json", str(out), "-q"])
    assert r.exit_code == 0, r.output
    return json.loads(out.read_text())["report"]


def test_demo_comment_names_the_breaks_their_reasons_and_fixes(demo_report):
    text = render_markdown(demo_report)
    assert text.startswith("### netpol-simulator: 7 workload pairs would break")
    assert "shop/checkout → payments/payments-api TCP/7070" in text
    assert "no egress rule admits UDP/53 to kube-system/coredns" in text
    assert text.count("<details>") == text.count("</details>") == 7
    assert "**DNS breaks** in 4 groups" in text
    # tier by tier: the admin Deny and its admin-tier fix, the baseline Deny and both ways
    assert ('denied by AdminNetworkPolicy pci-ingress-guardrail (priority 10) ingress rule 2 '
            '"deny-other-namespaces" (admin tier)') in text
    assert ("edit AdminNetworkPolicy/pci-ingress-guardrail (ingress, Allow before rule 2) "
            "[admin tier]") in text
    assert "cluster-admin rights" in text
    assert "Or, without touching the baseline: payments/netpol-simulator-fix-" in text
    assert "denies 6 connections the candidate allows" in text


def test_comment_stays_under_the_limit_for_thousands_of_groups(demo_report):
    big = copy.deepcopy(demo_report)
    template = big["breaks"]["groups"][0]
    groups = []
    for i in range(3000):
        g = copy.deepcopy(template)
        g["id"] = f"B{i + 1}"
        g["source"]["label"] = f"team-{i:04d}/" + "very-long-workload-name-" * 4
        g["reason"] = template["reason"] * 3
        g["fix"]["yaml"] = template["fix"]["yaml"] * 5
        groups.append(g)
    big["breaks"].update(total=3000, shown=3000, groups=groups)
    text = render_markdown(big)
    assert len(text) < LIMIT
    assert "more (see the HTML report)" in text


def test_hostile_names_are_inert(demo_report):
    hostile = copy.deepcopy(demo_report)
    g = hostile["breaks"]["groups"][0]
    g["source"]["label"] = 'x/<script>alert(1)</script>|[link](http://evil)'
    g["reason"] = '"><img src=x onerror=alert(1)> `code` *bold*'
    g["fix"]["yaml"] = "name: '```'\n"
    text = render_markdown(hostile)
    assert "<script>" not in text and "<img" not in text
    assert "&lt;script&gt;" in text and "\\|\\[link\\]" in text
    assert "\\`code\\` \\*bold\\*" in text
    assert "````yaml\nname: '```'\n````" in text
