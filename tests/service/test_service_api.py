"""The service's HTTP contract through TestClient, with injected store, settings and registry."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
from conftest import make_settings
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest

import grokwatch.exceptions as exc_module
from grokwatch.detector import RunDetector
from grokwatch.exceptions import ServiceError
from grokwatch.service import create_app
from grokwatch.service.errors import STATUS
from grokwatch.store import MemoryStore, SQLiteStore
from grokwatch.wire import NONFINITE_DESCRIPTION, DecisionOut, ForecastOut

JSON = {"content-type": "application/json"}


def curve(n: int, *, start: int = 0, every: int = 100) -> list[dict[str, Any]]:
    """A run that memorizes by step 300 and groks at ~step 1500."""
    out = []
    for i in range(n):
        step = start + i * every
        train = min(1.0, 0.2 + step / 300)
        test = 0.05 if step < 1000 else min(1.0, 0.05 + (step - 1000) / 500)
        out.append(
            {
                "step": step,
                "values": {"train_accuracy": train, "test_accuracy": test, "train_loss": 1.0},
            }
        )
    return out


def register(client: TestClient, run_id: str = "r1", **kw: Any) -> Any:
    return client.post("/v1/runs", json={"run_id": run_id, **kw})


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


# -- registration, ingestion, reading ----------------------------------------------------------


def test_register_is_idempotent_and_returns_the_state(client: TestClient) -> None:
    r = register(client, task="x+y mod 53", model="MLP", budget=5000, labels={"sweep": "a"})
    assert r.status_code == 201
    body = r.json()
    assert body["run_id"] == "r1"
    assert body["task"] == "x+y mod 53"
    assert body["budget"] == 5000
    assert body["labels"] == {"sweep": "a"}
    assert body["live"] is True
    assert body["decision"] is None
    again = register(client, task="something else")
    assert again.status_code == 200
    assert again.json()["task"] == "x+y mod 53"  # the first registration is kept


def test_points_are_idempotent_and_may_arrive_out_of_order(client: TestClient) -> None:
    register(client)
    pts = curve(20)
    first = client.post("/v1/runs/r1/points", json={"points": pts[10:]})
    assert first.status_code == 200
    assert first.json()["accepted"] == 10
    late = client.post("/v1/runs/r1/points", json={"points": pts[:12]})
    assert late.json() == {**late.json(), "accepted": 10, "duplicates": 2}
    state = client.get("/v1/runs/r1").json()
    assert state["n_points"] == 20
    assert state["last_step"] == 1900
    assert state["events"]["t_mem"] == 300
    assert state["events"]["t_grok"] == 1500
    assert state["phase"] == "generalized"


def test_the_service_judges_exactly_like_the_in_process_detector(client: TestClient) -> None:
    """The same RunDetector serves in-process and behind HTTP: same decision and summary."""
    register(client, budget=3000)
    pts = curve(25)
    local = RunDetector(budget=3000)
    for p in pts:
        decision = local.observe(p["step"], p["values"])
    for i in range(0, 25, 7):
        client.post("/v1/runs/r1/points", json={"points": pts[i : i + 7]})
    state = client.get("/v1/runs/r1").json()
    assert state["decision"]["message"] == decision.message
    assert state["decision"]["action"] == decision.action.value
    assert decision.forecast is not None  # the default forecaster, on both sides
    assert state["forecast"] == ForecastOut.of(decision.forecast).model_dump(mode="json")  # type: ignore[union-attr]
    assert state["phase"] == local.phase.value
    assert state["outcome"] == local.outcome().value
    assert state["events"]["gap"] == local.events.gap


def test_points_response_carries_the_decision(client: TestClient) -> None:
    register(client)
    r = client.post("/v1/runs/r1/points", json={"points": curve(3)}).json()
    assert r["decision"]["step"] == 200
    assert r["decision"]["reason"] == "no_forecaster"
    assert r["phase"] == r["decision"]["phase"]


def test_points_after_finish_are_kept_and_the_run_stays_finished(client: TestClient) -> None:
    register(client)
    client.post("/v1/runs/r1/points", json={"points": curve(5)})
    fin = client.post("/v1/runs/r1/finish", json={"summary": {"agent_errors": 2, "note": "x"}})
    assert fin.status_code == 200
    assert fin.json()["finished_at"] is not None
    assert fin.json()["summary"]["note"] == "x"
    assert fin.json()["summary"]["phase"] == "plateau"  # the detector's view wins
    dup = client.post("/v1/runs/r1/points", json={"points": curve(5)})
    assert dup.status_code == 200
    assert dup.json()["accepted"] == 0
    late = client.post("/v1/runs/r1/points", json={"points": curve(12, start=500)})
    assert late.json()["accepted"] == 12  # e.g. a spool replayed out of order
    state = client.get("/v1/runs/r1").json()
    assert state["finished_at"] == fin.json()["finished_at"]
    assert state["summary"]["phase"] == "generalized" == state["phase"]
    assert state["summary"]["note"] == "x"
    assert client.post("/v1/runs/r1/finish", json={}).status_code == 200  # idempotent


def test_unknown_runs_are_404(client: TestClient) -> None:
    for r in (
        client.get("/v1/runs/nope"),
        client.post("/v1/runs/nope/points", json={"points": curve(1)}),
        client.post("/v1/runs/nope/finish", json={}),
    ):
        assert r.status_code == 404
        assert r.json()["error"] == "unknown_run"


def test_list_runs_paginates(client: TestClient) -> None:
    for i in range(5):
        register(client, f"run-{i}")
    page = client.get("/v1/runs", params={"offset": 1, "limit": 2}).json()
    assert page["total"] == 5
    assert [r["run_id"] for r in page["runs"]] == ["run-1", "run-2"]
    assert client.get("/v1/runs", params={"limit": 0}).status_code == 422


# -- NaN / inf policy --------------------------------------------------------------------------


def test_nonfinite_strings_are_stored_as_floats_and_null_means_absent(
    client: TestClient, store: MemoryStore
) -> None:
    register(client)
    values = {"a": "nan", "b": "inf", "c": "-inf", "d": None, "e": 1, "train_loss": "nan"}
    r = client.post("/v1/runs/r1/points", json={"points": [{"step": 0, "values": values}]})
    assert r.status_code == 200
    assert r.json()["phase"] == "diverged"  # a NaN training loss is data, judged as such
    [(_, stored)] = store.points("r1")
    assert math.isnan(stored["a"])
    assert stored["b"] == math.inf
    assert stored["c"] == -math.inf
    assert "d" not in stored
    assert stored["e"] == 1.0
    last = client.get("/v1/runs/r1").json()["last_values"]
    assert last == {"a": "nan", "b": "inf", "c": "-inf", "e": 1.0, "train_loss": "nan"}


@pytest.mark.parametrize(
    "raw",
    [
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"1e400",
        b'"NaN"',
        b'"Inf"',
        b'"1.5"',
        b"true",
        b"[1]",
    ],
)
def test_other_spellings_of_nonfinite_values_are_rejected(client: TestClient, raw: bytes) -> None:
    register(client)
    body = b'{"points": [{"step": 0, "values": {"x": ' + raw + b"}}]}"
    r = client.post("/v1/runs/r1/points", content=body, headers=JSON)
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_body"


def test_nan_tokens_are_rejected_in_free_form_json_too(client: TestClient) -> None:
    r = client.post(
        "/v1/runs", content=b'{"run_id": "r1", "hyperparameters": {"lr": NaN}}', headers=JSON
    )
    assert r.status_code == 422
    r = client.post(
        "/v1/runs", content=b'{"run_id": "r1", "meta": {"x": [1, Infinity]}}', headers=JSON
    )
    assert r.status_code == 422


def test_the_nan_policy_is_written_in_the_openapi_schema(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    point = schema["components"]["schemas"]["Point"]
    values = point["properties"]["values"]["additionalProperties"]
    assert values["description"] == NONFINITE_DESCRIPTION
    kinds = values["anyOf"]
    assert {"enum": ["nan", "inf", "-inf"], "type": "string"} in kinds
    assert {"type": "null"} in kinds


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"run_id": "r1", "colour": "red"},
        {"run_id": "r1", "budget": "100"},
        {"run_id": "bad id"},
        {"run_id": "-leading"},
        {"run_id": "x" * 129},
        {"run_id": ""},
        {"run_id": "r1", "labels": {"bad key": "v"}},
    ],
)
def test_bad_registrations_are_rejected(client: TestClient, body: dict[str, Any]) -> None:
    r = client.post("/v1/runs", json=body)
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_body"


@pytest.mark.parametrize(
    "body",
    [
        {"points": []},
        {"points": [{"step": -1, "values": {}}]},
        {"points": [{"step": 1.5, "values": {}}]},
        {"points": [{"step": 2.5e-42, "values": {}}]},
        {"points": [{"step": "1", "values": {}}]},
        {"points": [{"step": True, "values": {}}]},
        {"points": [{"step": 2**53, "values": {}}]},  # past MAX_STEP
        {"points": [{"step": 2**53 + 1, "values": {}}]},  # would round to 2**53 as a double
        {"points": [{"step": 1, "values": {}}], "dropped": -1},
        {"points": [{"step": 1, "values": {}, "extra": 1}]},
        {"points": [{"step": 1, "values": {"": 1}}]},
        {"points": [{"step": 1, "values": {}}], "unknown": True},
        {"pts": []},
    ],
)
def test_bad_batches_are_rejected(client: TestClient, body: dict[str, Any]) -> None:
    register(client)
    r = client.post("/v1/runs/r1/points", json=body)
    assert r.status_code == 422, r.text


def test_whole_floats_are_steps(client: TestClient) -> None:
    """JSON Schema integers include 5.0; the largest step is 2**53 - 1."""
    register(client)
    body = {"points": [{"step": 5.0, "values": {}}, {"step": 2**53 - 1, "values": {}}]}
    r = client.post("/v1/runs/r1/points", json={**body, "dropped": 2.0})
    assert r.status_code == 200, r.text
    assert client.get("/v1/runs/r1").json()["last_step"] == 2**53 - 1


def test_a_bad_step_is_one_clear_error(client: TestClient) -> None:
    register(client)
    r = client.post("/v1/runs/r1/points", json={"points": [{"step": 1.5, "values": {}}]})
    assert r.status_code == 422
    (error,) = r.json()["detail"]
    assert error["loc"] == ["points", "0", "step"] and error["type"] == "whole_number"
    assert error["msg"] == f"Input should be a whole number from 0 to {2**53 - 1}"


def test_malformed_json_is_a_clear_422(client: TestClient) -> None:
    r = client.post("/v1/runs", content=b"{not json", headers=JSON)
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_json"


@pytest.mark.parametrize("run_id", ["bad%20id", "-x", "x" * 129, "a%2Fb", "%C3%A9t%C3%A9"])
def test_run_ids_in_paths_are_validated(client: TestClient, run_id: str) -> None:
    r = client.get(f"/v1/runs/{run_id}")
    assert r.status_code in (404, 422)
    assert r.json()["error"] in ("invalid_parameter", "not_found")


def test_body_size_limit_is_413_with_or_without_content_length(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, max_body_bytes=2048), store=MemoryStore())
    with TestClient(app) as client:
        register(client)
        big = {"points": curve(100)}
        r = client.post("/v1/runs/r1/points", json=big)
        assert r.status_code == 413
        assert r.json()["error"] == "body_too_large"

        def chunks():  # no Content-Length: the limit applies while reading
            for _ in range(10):
                yield b" " * 1000

        r = client.post("/v1/runs/r1/points", content=chunks(), headers=JSON)
        assert r.status_code == 413
        assert client.get("/v1/runs/r1").json()["n_points"] == 0


def test_live_run_cap_is_a_clear_429(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, max_live_runs=2), store=MemoryStore())
    with TestClient(app) as client:
        assert register(client, "a").status_code == 201
        assert register(client, "b").status_code == 201
        r = register(client, "c")
        assert r.status_code == 429
        assert r.json()["error"] == "too_many_runs"
        assert "GROKWATCH_MAX_LIVE_RUNS" in r.json()["message"]
        assert r.headers["retry-after"]
        assert register(client, "a").status_code == 200  # existing runs are fine
        client.post("/v1/runs/a/finish", json={})
        assert register(client, "c").status_code == 201


def test_token_guards_writes_only(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, token="s3cret"), store=MemoryStore())
    with TestClient(app) as client:
        r = register(client)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        bad = {"authorization": "Bearer nope"}
        assert client.post("/v1/runs", json={"run_id": "r1"}, headers=bad).status_code == 401
        good = {"authorization": "Bearer s3cret"}
        assert client.post("/v1/runs", json={"run_id": "r1"}, headers=good).status_code == 201
        r = client.post("/v1/runs/r1/points", json={"points": curve(1)})
        assert r.status_code == 401
        r = client.post("/v1/runs/r1/finish", json={})
        assert r.status_code == 401
        assert client.get("/v1/runs/r1").status_code == 200
        assert client.get("/metrics").status_code == 200
        assert 'reason="unauthorized"' in client.get("/metrics").text


def test_unknown_routes_and_methods_use_the_error_body(client: TestClient) -> None:
    r = client.get("/v2/nothing")
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"
    r = client.delete("/v1/runs")
    assert r.status_code == 405
    assert r.json()["error"] == "method_not_allowed"


def test_every_service_error_has_exactly_one_status() -> None:
    errors = [
        cls
        for cls in vars(exc_module).values()
        if isinstance(cls, type) and issubclass(cls, ServiceError) and cls is not ServiceError
    ]
    assert errors
    for cls in errors:
        assert cls in STATUS, cls


# -- health, restart, injection ----------------------------------------------------------------


def test_without_the_lifespan_the_service_is_not_ready(settings: Any) -> None:
    client = TestClient(create_app(settings, store=MemoryStore()))  # no `with`: no lifespan
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503
    r = client.get("/v1/runs")
    assert r.status_code == 503
    assert r.json()["error"] == "not_ready"


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    # the run table loads on a worker thread: until it is loaded, readiness says so with a 503
    # (a busy machine can answer the first call before the load is done)
    deadline = time.monotonic() + 30
    while (ready := client.get("/readyz")).status_code == 503 and time.monotonic() < deadline:
        assert ready.json()["status"] == "loading"
        time.sleep(0.05)
    assert ready.status_code == 200
    assert ready.json()["status"] == "ok"


def test_after_a_restart_every_run_history_and_decision_are_back(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings)) as client:
        register(client, "live", budget=4000)
        register(client, "done")
        client.post("/v1/runs/live/points", json={"points": curve(18)})
        client.post("/v1/runs/done/points", json={"points": curve(4)})
        client.post("/v1/runs/done/finish", json={})
        before = {rid: client.get(f"/v1/runs/{rid}").json() for rid in ("live", "done")}
    with TestClient(create_app(settings)) as client:  # same database, fresh process state
        for rid in ("live", "done"):
            after = client.get(f"/v1/runs/{rid}").json()
            for key in ("n_points", "last_step", "phase", "events", "decision", "forecast"):
                assert after[key] == before[rid][key], key
            assert after["finished_at"] == pytest.approx(before[rid]["finished_at"])
        text = client.get("/metrics").text
        assert 'grokwatch_run_step{run_id="live"} 1700.0' in text
        assert client.get("/v1/runs").json()["total"] == 2
        r = client.post("/v1/runs/live/points", json={"points": curve(2, start=1700)})
        assert r.json()["accepted"] == 1


def test_an_injected_store_is_left_open_and_an_owned_one_is_closed(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "mine.db")
    with TestClient(create_app(make_settings(tmp_path), store=store)) as client:
        register(client)
    assert store.get_run("r1").run_id == "r1"  # still usable
    store.close()


# -- Prometheus --------------------------------------------------------------------------------


def test_metrics_export_live_runs_and_service_counters(
    client: TestClient, registry: CollectorRegistry
) -> None:
    register(client)
    client.post("/v1/runs/r1/points", json={"points": curve(20)})
    client.post("/v1/runs/r1/points", json={"points": curve(2)})
    client.post("/v1/runs/nope/points", json={"points": curve(1)})
    text = client.get("/metrics").text
    assert text == generate_latest(registry).decode() or "grokwatch_run_step" in text
    for line in (
        'grokwatch_run_step{run_id="r1"} 1900.0',
        'grokwatch_run_test_accuracy_ratio{run_id="r1"} 1.0',
        'grokwatch_run_event_step{event="t_grok",run_id="r1"} 1500.0',
        'grokwatch_run_phase{phase="generalized",run_id="r1"} 1.0',
        'grokwatch_run_phase_changes_total{run_id="r1"} 3.0',
        'grokwatch_run_points{run_id="r1"} 20.0',
        "grokwatch_service_ingested_points_total 20.0",
        "grokwatch_service_duplicate_points_total 2.0",
        "grokwatch_service_ingest_requests_total 2.0",
        'grokwatch_service_rejected_requests_total{reason="unknown_run"} 1.0',
        'grokwatch_service_live_runs{state="running"} 1.0',
    ):
        assert line in text, line
    count = "grokwatch_service_request_duration_seconds_count"
    assert count + '{handler="/v1/runs/{run_id}/points"}' in text
    for name in ("grokwatch_run_step", "grokwatch_service_ingested_points"):
        assert prometheus_client.REGISTRY.get_sample_value(name) is None  # nothing global


def test_every_metric_has_help_text(client: TestClient) -> None:
    register(client)
    client.post("/v1/runs/r1/points", json={"points": curve(3)})
    text = client.get("/metrics").text
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    helped = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP")}
    assert families == helped
    assert all(name.startswith("grokwatch_") for name in families)


def test_finished_runs_leave_the_exposition_after_the_ttl(tmp_path: Path) -> None:
    clock = FakeClock()
    settings = make_settings(tmp_path, finished_ttl=60, idle_ttl=3600, sweep_interval=0.05)
    app = create_app(settings, store=MemoryStore(), clock=clock)
    with TestClient(app) as client:
        for rid in ("a", "b"):
            register(client, rid)
            client.post(f"/v1/runs/{rid}/points", json={"points": curve(2)})
        client.post("/v1/runs/a/finish", json={})
        clock.now += 30
        assert 'run_id="a"' in client.get("/metrics").text
        clock.now += 31
        text = client.get("/metrics").text
        assert 'run_id="a"' not in text
        assert 'grokwatch_run_step{run_id="b"}' in text
        state = client.get("/v1/runs/a").json()  # still readable from the store
        assert state["live"] is False
        assert state["n_points"] == 2
        time.sleep(0.2)  # the sweeper unloads it from memory too
        assert "grokwatch_service_unloaded_runs_total 1.0" in client.get("/metrics").text
        clock.now += 3600  # b idles out...
        assert 'run_id="b"' not in client.get("/metrics").text
        client.post("/v1/runs/b/points", json={"points": curve(1, start=500)})
        text = client.get("/metrics").text
        assert 'grokwatch_run_step{run_id="b"} 500.0' in text  # ...and it is back


# -- a forecaster plugged into the detector --------------------------------------------------


class AccuracyForecaster:
    """A deterministic stand-in for a forecaster: P(grok) is the last test accuracy."""

    class Run:
        columns = ("test_accuracy",)
        change_points: tuple[Any, ...] = ()
        new_change_points: tuple[Any, ...] = ()

        def update_rows(self, steps: Any, rows: Any, absent: Any) -> Any:
            from grokwatch.decision import Forecast

            step, p = steps[-1], 0.0 if absent[-1, 0] else float(rows[-1, 0])
            return Forecast(
                step=step,
                p_grok_horizon=p,
                horizon=500,
                p_grok_budget=p,
                t_grok=2000.0 if p < 0.9 else float(step),
            )

        def p_grok_within(self, budget: int) -> float | None:
            return None

    def start(self, *, budget: int | None, rules: Any = None, tracker: Any = None) -> Any:
        return self.Run()


def test_forecasts_flow_to_the_api_and_prometheus_and_survive_a_restart(tmp_path: Path) -> None:
    def factory(meta: Any) -> RunDetector:
        return RunDetector(budget=meta.get("budget"), forecaster=AccuracyForecaster())

    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, detector_factory=factory)) as client:
        register(client, budget=5000)
        r = client.post("/v1/runs/r1/points", json={"points": curve(12)}).json()
        assert r["decision"]["forecast"] is None  # the answer comes before the forecast
        state = client.get("/v1/runs/r1").json()  # a read brings the forecast up to date
        assert state["decision"]["forecast"]["p_grok_budget"] == pytest.approx(0.25)
        text = client.get("/metrics").text
        assert 'grokwatch_run_grok_probability_ratio{run_id="r1"} 0.25' in text
        assert 'grokwatch_run_predicted_grok_step{run_id="r1"} 2000.0' in text
        before = client.get("/v1/runs/r1").json()["forecast"]
    with TestClient(create_app(settings, detector_factory=factory)) as client:
        assert client.get("/v1/runs/r1").json()["forecast"] == before


def test_decisions_round_trip_through_the_wire() -> None:
    from grokwatch.decision import (
        Action,
        ChangePoint,
        ChangePointMethod,
        Decision,
        Direction,
        Forecast,
        ForecastReason,
        Phase,
        Reason,
    )

    cp = ChangePoint(
        "weight_norm", 700, Direction.DOWN, 2.5, ChangePointMethod.BAYES, 900, 0.1, -0.3
    )
    forecast = Forecast(
        step=900,
        p_grok_horizon=0.4,
        horizon=1000,
        p_grok_budget=0.8,
        t_grok=2500.0,
        t_grok_low=1800.0,
        t_grok_high=4000.0,
        confidence=0.9,
        reason=ForecastReason.OK,
        phase=Phase.PLATEAU,
        alert=True,
        message="will grok",
        missing=("fourier_gini",),
    )
    decision = Decision(
        900, Action.CONTINUE, Reason.WILL_GROK, "m", Phase.PLATEAU, forecast, 0, (cp,)
    )
    wire = DecisionOut.of(decision)
    assert wire is not None
    again = DecisionOut.model_validate_json(wire.model_dump_json()).to_decision()
    assert again == decision


def test_the_forecaster_setting(tmp_path: Path) -> None:
    from grokwatch.exceptions import ConfigError

    app = create_app(make_settings(tmp_path, forecaster="none"), store=MemoryStore())
    with TestClient(app) as client:
        register(client)
        r = client.post("/v1/runs/r1/points", json={"points": curve(15)}).json()
        assert r["decision"]["forecast"] is None
        assert r["decision"]["reason"] == "no_forecaster"
    with pytest.raises(ConfigError, match="cannot load the forecaster"):
        create_app(make_settings(tmp_path, forecaster=str(tmp_path / "missing.npz")))


def _metric(client: TestClient, prefix: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    raise AssertionError(f"no {prefix} in /metrics")


def test_answers_come_first_and_the_forecasts_follow_without_a_read(tmp_path: Path) -> None:
    """Each answer has its batch's phase and the run's previous forecast; the service then
    makes the batch's forecast on its own, and it is the in-process detector's."""
    batches = [curve(8), curve(8, start=800), curve(8, start=1600)]
    local = RunDetector(budget=5000)
    with TestClient(create_app(make_settings(tmp_path), store=MemoryStore())) as client:
        register(client, budget=5000)
        previous = None
        for points in batches:
            answer = client.post("/v1/runs/r1/points", json={"points": points}).json()
            decision = local.update_many([(p["step"], p["values"]) for p in points])
            assert answer["phase"] == decision.phase.value
            assert answer["decision"]["forecast"] == previous
            deadline = time.monotonic() + 10
            while _metric(client, "grokwatch_service_forecast_backlog_runs ") > 0:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert local.forecast is not None
            previous = ForecastOut.of(local.forecast).model_dump(mode="json")
        assert 1 <= _metric(client, "grokwatch_service_forecast_lag_seconds_count ") <= 3
        state = client.get("/v1/runs/r1").json()
        assert state["decision"]["forecast"] == previous
        assert state["forecast"] == previous
