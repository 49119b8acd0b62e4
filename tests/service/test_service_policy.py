"""Run control in the service: a registered policy gives the same advice as in-process, every
stop/extend is stored in the run table and exported to Prometheus."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from test_service_api import curve, register

from grokwatch import RunDetector, RunPolicy
from grokwatch.store import MemoryStore

POLICY = RunPolicy(finish_patience=1, extend=False)


def test_the_service_applies_the_registered_policy(
    client: TestClient, store: MemoryStore, registry: CollectorRegistry
) -> None:
    assert register(client, "p1", budget=5000, meta={"policy": POLICY.to_json()}).status_code == 201
    points = curve(25)
    answers: list[dict[str, Any]] = []
    for p in points:
        r = client.post("/v1/runs/p1/points", json={"points": [p]})
        assert r.status_code == 200, r.text
        answers.append(r.json()["decision"])
    local = RunDetector(budget=5000, policy=POLICY)
    expected = [local.observe(p["step"], p["values"]) for p in points]
    assert [a["action"] for a in answers] == [d.action.value for d in expected]
    stops = [a for a in answers if a["action"] == "stop"]
    assert stops and stops[0]["reason"] == "finished"
    # recorded in the run table as soon as it was advised (the run is still live)
    control = store.get_run("p1").summary["control"]
    assert [(a["action"], a["reason"]) for a in control["actions"]] == [("stop", "finished")]
    text = generate_latest(registry).decode()
    assert 'grokwatch_run_actions_total{action="stop",reason="finished",run_id="p1"} 1.0' in text
    assert 'grokwatch_run_advised_action{action="stop",run_id="p1"} 1.0' in text
    assert 'grokwatch_run_last_action_step{action="stop",reason="finished",run_id="p1"}' in text


def test_runs_without_a_policy_export_no_advice(client: TestClient, registry: CollectorRegistry):
    register(client, "plain", budget=5000)
    for p in curve(25):
        assert (
            client.post("/v1/runs/plain/points", json={"points": [p]}).json()["decision"]["action"]
            == "continue"
        )
    text = generate_latest(registry).decode()
    assert 'grokwatch_run_advised_action{action="stop",run_id="plain"}' not in text


def test_a_bad_policy_is_a_clear_422(client: TestClient) -> None:
    r = register(client, "bad", budget=5000, meta={"policy": {"risk": 0.9}})
    assert r.status_code == 422
    assert "risk" in r.text
    r = register(client, "bad2", budget=5000, meta={"policy": {"nope": 1}})
    assert r.status_code == 422 and "nope" in r.text
