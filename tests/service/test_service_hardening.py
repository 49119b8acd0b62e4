"""What probing the service from outside found (issue 15), each pinned: bounded numbers and a
scrape that one run cannot break, JSON-only writes, reads behind the token, counters that
survive a restart, and bounded measure names."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from grokwatch.decision import Forecast, Phase
from grokwatch.metrics import RunCollector, RunView
from grokwatch.service import ServiceSettings, create_app
from grokwatch.store import MemoryStore, SQLiteStore
from grokwatch.wire import MAX_COUNT

JSON = {"content-type": "application/json"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


def register(client: TestClient, run_id: str = "r1", **body: Any) -> None:
    r = client.post("/v1/runs", json={"run_id": run_id, **body})
    assert r.status_code in (200, 201), r.text


# -- bounded numbers, robust exposition -----------------------------------------------------


def test_the_reported_overflow_is_refused_and_the_scrape_keeps_working(client: TestClient) -> None:
    """The probe: ``"dropped": 1`` followed by 400 zeros was accepted, then /metrics said 500."""
    register(client)
    body = b'{"points": [{"step": 0, "values": {"x": 1}}], "dropped": 1' + b"0" * 400 + b"}"
    r = client.post("/v1/runs/r1/points", content=body, headers=JSON)
    assert r.status_code == 422
    r = client.post("/v1/runs/r1/points", json={"points": [{"step": 0}], "dropped": MAX_COUNT + 1})
    assert r.status_code == 422
    r = client.post(
        "/v1/runs/r1/points",
        json={"points": [{"step": 0, "values": {"x": 1}}], "dropped": MAX_COUNT},
    )
    assert r.status_code == 200
    scrape = client.get("/metrics")
    assert scrape.status_code == 200
    assert value(scrape.text, "grokwatch_run_dropped_records_total", run_id="r1") == MAX_COUNT


def test_a_huge_agent_error_count_in_a_summary_never_fails_the_scrape(client: TestClient) -> None:
    register(client)
    register(client, "r2")
    body = b'{"summary": {"agent_errors": 1' + b"0" * 400 + b"}}"
    assert client.post("/v1/runs/r1/finish", content=body, headers=JSON).status_code == 200
    scrape = client.get("/metrics")
    assert scrape.status_code == 200
    # an unusable count is not a count: the run shows 0, the other run is unaffected
    assert value(scrape.text, "grokwatch_run_agent_errors_total", run_id="r1") == 0
    assert value(scrape.text, "grokwatch_run_agent_errors_total", run_id="r2") == 0
    assert client.get("/v1/runs/r1").status_code == 200


def test_one_runs_unrepresentable_value_is_skipped_and_counted() -> None:
    """Whatever reaches the collector, the exposition renders; what has no double is left
    out and counted, and every other series of that run and of the others is there."""
    forecast = Forecast(step=5, p_grok_horizon=0.5, horizon=1000, p_grok_budget=0.9)
    bad = RunView(
        run_id="bad",
        step=10**400,
        values={"test_accuracy": 0.5, "x": math.nan},
        phase=Phase.PLATEAU,
        events={"t_mem": 5, "t_grok": None},
        last_report=1.0,
        forecast=forecast,
        agent_errors=10**400,
        dropped=10**500,
    )
    good = RunView("good", 7, {"test_accuracy": 0.25}, Phase.MEMORIZING, {}, 2.0)
    registry = CollectorRegistry(auto_describe=False)
    collector = RunCollector(lambda: [bad, good])
    registry.register(collector)
    text = generate_latest(registry).decode()
    assert value(text, "grokwatch_exposition_skipped_values_total") == 3
    assert value(text, "grokwatch_run_test_accuracy_ratio", run_id="bad") == 0.5
    assert math.isnan(value(text, "grokwatch_run_measure", run_id="bad", measure="x"))
    assert value(text, "grokwatch_run_step", run_id="good") == 7
    assert ("grokwatch_run_step", (("run_id", "bad"),)) not in samples(text)
    text = generate_latest(registry).decode()  # counted at every scrape that skips them
    assert value(text, "grokwatch_exposition_skipped_values_total") == 6


# -- JSON-only writes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; b=x",
        "text/xml",
    ],
)
@pytest.mark.parametrize("path", ["/v1/runs", "/v1/runs/r1/points", "/v1/runs/r1/finish"])
def test_writes_require_json(client: TestClient, path: str, content_type: str | None) -> None:
    register(client)
    headers = {} if content_type is None else {"content-type": content_type}
    body = b'{"run_id": "r9"}' if path == "/v1/runs" else b'{"points": [{"step": 1}]}'
    r = client.post(path, content=body, headers=headers)
    assert r.status_code == 415
    assert r.json()["error"] == "unsupported_media_type"
    assert 'grokwatch_service_rejected_requests_total{reason="unsupported_media_type"}' in (
        client.get("/metrics").text
    )
    assert client.get("/v1/runs").json()["total"] == 1  # nothing was written


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "application/x+json"]
)
def test_json_content_types_are_accepted(client: TestClient, content_type: str) -> None:
    r = client.post("/v1/runs", content=b'{"run_id": "r1"}', headers={"content-type": content_type})
    assert r.status_code == 201


# -- reads behind the token -----------------------------------------------------------------

TOKEN = "s3cret-token-for-reads"


@pytest.fixture
def protected(tmp_path: Path) -> Any:
    settings = ServiceSettings(db_path=tmp_path / "db", token=TOKEN, protect_reads=True)
    with TestClient(create_app(settings, store=MemoryStore())) as c:
        yield c


@pytest.mark.parametrize("path", ["/metrics", "/v1/runs", "/v1/runs/r1", "/docs", "/openapi.json"])
def test_protected_reads_need_the_token(protected: TestClient, path: str) -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    assert protected.post("/v1/runs", json={"run_id": "r1"}, headers=auth).status_code == 201
    assert protected.get(path).status_code == 401
    assert protected.get(path, headers={"authorization": "Bearer wrong"}).status_code == 401
    assert protected.get(path, headers=auth).status_code == 200


def test_health_probes_stay_open_and_reads_are_open_by_default(
    protected: TestClient, client: TestClient
) -> None:
    assert protected.get("/healthz").status_code == 200
    assert protected.get("/readyz").status_code == 200
    for path in ("/metrics", "/v1/runs", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 200


# -- counters survive a restart -------------------------------------------------------------


def test_per_run_counters_survive_a_restart(tmp_path: Path) -> None:
    settings = ServiceSettings(db_path=tmp_path / "db")
    db = tmp_path / "runs.db"

    def scrape(store: SQLiteStore) -> str:
        with TestClient(create_app(settings, store=store)) as c:
            deadline = time.monotonic() + 30
            while c.get("/readyz").status_code != 200:  # the run table loads in the background
                assert time.monotonic() < deadline
                time.sleep(0.01)
            return str(c.get("/metrics").text)

    store = SQLiteStore(db)
    with TestClient(create_app(settings, store=store)) as c:
        register(c, "live")
        register(c, "done")
        point = {"points": [{"step": 1, "values": {"test_accuracy": 0.1}}]}
        assert c.post("/v1/runs/live/points", json={**point, "dropped": 7}).status_code == 200
        assert c.post("/v1/runs/done/points", json={**point, "dropped": 2}).status_code == 200
        summary = {"agent_errors": 3, "transport_dropped": 5}
        assert c.post("/v1/runs/done/finish", json={"summary": summary}).status_code == 200
    store.close()
    store = SQLiteStore(db)
    text = scrape(store)
    store.close()
    assert value(text, "grokwatch_run_dropped_records_total", run_id="live") == 7
    assert value(text, "grokwatch_run_dropped_records_total", run_id="done") == 5
    assert value(text, "grokwatch_run_agent_errors_total", run_id="done") == 3


# -- measure names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["a\nb", 'q"uote', "nul\x00", "", "x" * 129, "/lead", "sp ace", "é", "1abc"]
)
def test_measure_names_are_restricted(client: TestClient, name: str) -> None:
    register(client)
    r = client.post("/v1/runs/r1/points", json={"points": [{"step": 1, "values": {name: 1.0}}]})
    assert r.status_code == 422
    assert client.get("/v1/runs/r1").json()["n_points"] == 0


@pytest.mark.parametrize(
    "name", ["test_loss", "weight_norm/layers.0.mlp", "_x", "a:b-c", "x" * 128]
)
def test_ordinary_measure_names_pass(client: TestClient, name: str) -> None:
    register(client)
    r = client.post("/v1/runs/r1/points", json={"points": [{"step": 1, "values": {name: 1.0}}]})
    assert r.status_code == 200


def test_label_values_have_no_control_characters(client: TestClient) -> None:
    r = client.post("/v1/runs", json={"run_id": "r1", "labels": {"team": "a\nb"}})
    assert r.status_code == 422


def test_distinct_measures_per_run_are_capped_and_refusals_counted(tmp_path: Path) -> None:
    settings = ServiceSettings(db_path=tmp_path / "db", max_measures_per_run=3)
    with TestClient(create_app(settings, store=MemoryStore())) as c:
        register(c)
        register(c, "r2")
        first = {"a": 1.0, "b": 2.0}
        second = {"a": 1.0, "c": 3.0, "d": 4.0, "e": 5.0}  # room for one more name: c
        points = [{"step": 1, "values": first}, {"step": 2, "values": second}]
        assert c.post("/v1/runs/r1/points", json={"points": points}).status_code == 200
        assert c.post("/v1/runs/r2/points", json={"points": points[:1]}).status_code == 200
        state = c.get("/v1/runs/r1").json()
        assert state["last_values"] == {"a": 1.0, "c": 3.0}
        text = c.get("/metrics").text
        assert value(text, "grokwatch_run_refused_values_total", run_id="r1") == 2
        assert value(text, "grokwatch_run_refused_values_total", run_id="r2") == 0
        assert value(text, "grokwatch_service_refused_values_total") == 2
        measures = {
            dict(labels)["measure"]
            for (name, labels) in samples(text)
            if name == "grokwatch_run_measure" and dict(labels)["run_id"] == "r1"
        }
        assert measures == {"a", "c"}
