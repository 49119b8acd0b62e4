"""The shipped Prometheus rules: valid (``promtool check rules``), unit-tested by
``promtool test rules``, and every rule has a test that fires it (with its labels and every
annotation checked) and one that does not."""

from __future__ import annotations

import subprocess

import yaml
from _scripts import load_script
from _tools import DEPLOY, tool

RULES = DEPLOY / "prometheus" / "grokwatch-rules.yml"
TESTS = DEPLOY / "prometheus" / "grokwatch-rules-test.yml"


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_promtool_checks_the_rules() -> None:
    out = subprocess.run(
        [tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules())} rules found" in out.stdout


def test_promtool_unit_tests_pass() -> None:
    out = subprocess.run(
        [tool("promtool"), "test", "rules", TESTS.name],
        capture_output=True,
        text=True,
        cwd=TESTS.parent,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_rule_is_tested_firing_and_not_firing() -> None:
    groups = yaml.safe_load(TESTS.read_text())["tests"]
    cases = [case for g in groups for case in g.get("alert_rule_test", [])]
    exprs = [case["expr"] for g in groups for case in g.get("promql_expr_test", [])]
    for rule in rules():
        if "record" in rule:
            assert any(rule["record"] in e for e in exprs), f"recording rule {rule['record']}"
            continue
        name = rule["alert"]
        mine = [c for c in cases if c["alertname"] == name]
        assert any(not c["exp_alerts"] for c in mine), f"{name}: no test where it stays quiet"
        firing = [a for c in mine for a in c["exp_alerts"]]
        assert firing, f"{name}: no test where it fires"
        for alert in firing:
            assert alert["exp_labels"]["severity"] == rule["labels"]["severity"]
            assert set(alert["exp_annotations"]) == set(rule["annotations"]), name


def test_per_run_alerts_route_by_experiment_and_team() -> None:
    alerts = [r for r in rules() if "alert" in r]
    for rule in alerts:
        if "grokwatch_run_" in rule["expr"]:
            assert "group_left(experiment, team) grokwatch_run_info" in rule["expr"], rule
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
    assert sum("grokwatch_run_info" in r["expr"] for r in alerts) == 8


def test_the_rules_table_in_the_docs_is_the_scripts_output() -> None:
    module = load_script(DEPLOY / "prometheus" / "rules_table.py")
    page = (DEPLOY.parent / "docs" / "monitoring.md").read_text()
    between = page.split("<!-- rules table -->\n", 1)[1].split("<!-- end rules table -->", 1)[0]
    assert between == module.table(), "run python deploy/prometheus/rules_table.py"
