"""The Grafana dashboard: the committed JSON is exactly what the grafanalib code makes, and it
is well formed for Grafana's file provisioning (the queries themselves run against a real
Prometheus in test_alerting_e2e.py)."""

from __future__ import annotations

import json
import re
from types import ModuleType

import yaml
from _scripts import load_script
from _tools import DEPLOY

GRAFANA = DEPLOY / "grafana"


def generator() -> ModuleType:
    return load_script(GRAFANA / "dashboard.py", "grokwatch_dashboard")


def board() -> dict:
    return json.loads((GRAFANA / "dashboards" / "grokwatch.json").read_text())


def test_the_committed_json_is_what_the_generator_makes() -> None:
    text = (GRAFANA / "dashboards" / "grokwatch.json").read_text()
    assert generator().render() == text, "run python deploy/grafana/dashboard.py"
    assert generator().main(["--check"]) == 0


def test_uid_panels_and_grid() -> None:
    b = board()
    assert re.fullmatch(r"[a-z0-9-]{8,40}", b["uid"])
    ids = [p["id"] for p in b["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in b["panels"]:
        pos = p["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, p["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps another panel"
                cells.add((x, y))


def test_every_query_uses_the_provisioned_datasource_and_defined_variables() -> None:
    b = board()
    provisioned = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    uid = provisioned["datasources"][0]["uid"]
    variables = {v["name"] for v in b["templating"]["list"]}
    assert {"run", "experiment"} <= variables
    builtin = {"__rate_interval", "__interval", "__range", "__all"}
    exprs = [t for p in b["panels"] for t in p.get("targets", [])]
    exprs += [a for a in b["annotations"]["list"] if "expr" in a]
    exprs += [v for v in b["templating"]["list"] if v.get("datasource")]
    assert len(exprs) >= 20
    for item in exprs:
        assert item["datasource"]["uid"] == uid
        text = json.dumps(item.get("expr") or item.get("query"))
        for name in re.findall(r"\$(\w+)", text):
            assert name in variables | builtin, name
    for p in b["panels"]:
        if p["type"] != "row":
            assert p["targets"], p["title"]


def test_per_run_panels_and_annotations_the_issue_asks_for() -> None:
    b = board()
    titles = " | ".join(p["title"] for p in b["panels"])
    for wanted in (
        "Fleet",
        "accuracy",
        "alert threshold",
        "Predicted t_grok",
        "Phase over time",
        "Key measures",
        "Ingest rate",
        "Rejected requests",
        "latency",
        "backlog",
    ):
        assert wanted in titles, wanted
    names = {a["name"] for a in b["annotations"]["list"]}
    assert {"Change points", "Stop/extend advice"} <= names


def test_the_threshold_variable_is_the_shipped_forecasters() -> None:
    from grokwatch.detector import resolve_forecaster

    shipped = resolve_forecaster("default").alert_threshold_
    assert abs(generator().ALERT_THRESHOLD - shipped) < 5e-4


def test_the_dashboard_provider_points_at_the_mounted_folder() -> None:
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "grokwatch.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{path}:ro" in mounts
