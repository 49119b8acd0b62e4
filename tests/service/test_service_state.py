"""The run table and the worker below the HTTP layer: batches stored together in one
transaction answer exactly as one by one, a refused batch fails only itself, and the worker
hands queued batches over together."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from grokwatch.detector import RunDetector
from grokwatch.exceptions import StoreError, UnknownRunError
from grokwatch.service.live import Ingested, detector_for, load_forecaster
from grokwatch.service.state import RunTable
from grokwatch.service.worker import Worker
from grokwatch.store import MemoryStore
from grokwatch.wire import PointsBatch, RunCreate, float_values


def batch(steps: Sequence[int], *, dropped: int | None = None) -> PointsBatch:
    points = [
        {
            "step": s,
            "values": {
                "train_accuracy": min(1.0, s / 300),
                "test_accuracy": 0.05 if s < 1000 else min(1.0, (s - 1000) / 500),
                "train_loss": "nan" if s == 700 else 1.0,
                "weight_norm": None,
            },
        }
        for s in steps
    ]
    return PointsBatch.model_validate({"points": points, "dropped": dropped})


def table(store: MemoryStore | None = None) -> RunTable:
    t = RunTable(store or MemoryStore(), detector_factory=lambda meta: detector_for(meta))
    for rid in ("a", "b"):
        t.register(RunCreate(run_id=rid, budget=3000))
    return t


REQUESTS = [
    ("a", batch(range(0, 1000, 100))),
    ("nope", batch([0])),
    ("b", batch([500, 100, 300], dropped=2)),
    ("a", batch([900, 1000, 1100, 400, 1200])),  # duplicates and a late point
    ("a", batch([1500, 1500])),  # the same step twice in one batch
]


def test_batches_stored_together_answer_as_one_by_one() -> None:
    together, alone = table(), table()
    results = together.ingest_many(REQUESTS)
    assert isinstance(results[1], UnknownRunError)
    for (run_id, b), got in zip(REQUESTS, results, strict=True):
        if run_id == "nope":
            with pytest.raises(UnknownRunError):
                alone.ingest(run_id, b)
            continue
        want = alone.ingest(run_id, b)
        assert isinstance(got, Ingested)
        assert (got.accepted, got.duplicates) == (want.accepted, want.duplicates)
        assert (got.last_step, got.phase, got.decision) == (
            want.last_step,
            want.phase,
            want.decision,
        )
    assert [r.accepted for r in results if isinstance(r, Ingested)] == [10, 3, 3, 1]
    for rid in ("a", "b"):
        x, y = together.get(rid), alone.get(rid)
        assert (x.n_points, x.last_step, x.phase, x.alerts, x.phase_changes, x.dropped) == (
            y.n_points,
            y.last_step,
            y.phase,
            y.alerts,
            y.phase_changes,
            y.dropped,
        )
        assert math.isnan(x.last_values["train_loss"]) is math.isnan(y.last_values["train_loss"])
        assert repr(together.store.points(rid)) == repr(alone.store.points(rid))  # NaN too
    assert together.get("a").phase_changes >= 2
    assert together.get("b").dropped == 2


class FlakyStore(MemoryStore):
    """Refuses every grouped write, and any write for run ``b``."""

    def add_points_many(self, batches: Any) -> list[int]:
        if len(batches) > 1:
            raise StoreError("disk I/O error")
        if batches[0][0] == "b":
            raise StoreError("disk I/O error")
        return super().add_points_many(batches)


def test_a_failed_group_falls_back_to_one_transaction_per_batch() -> None:
    t = table(FlakyStore())
    results = t.ingest_many([("a", batch([0, 100])), ("b", batch([0])), ("a", batch([200]))])
    assert isinstance(results[0], Ingested) and results[0].accepted == 2
    assert isinstance(results[1], StoreError)
    assert isinstance(results[2], Ingested) and results[2].accepted == 1
    assert t.get("a").n_points == 3 and t.get("b").n_points == 0
    assert t.get("b").last_step is None  # nothing judged that was not stored
    with pytest.raises(StoreError):
        t.ingest("b", batch([0]))


def test_the_worker_hands_queued_items_over_together() -> None:
    calls: list[list[int]] = []
    gate = threading.Event()

    def double(items: Sequence[int]) -> list[int | Exception]:
        calls.append(list(items))
        return [ValueError(f"odd {i}") if i == 3 else 2 * i for i in items]

    async def scenario() -> list[Any]:
        worker = Worker()
        blocker = asyncio.ensure_future(worker.call(gate.wait))
        await asyncio.sleep(0.05)  # the worker is now busy: the next calls queue up
        first = [asyncio.ensure_future(worker.call_many(double, i)) for i in (1, 2, 3)]
        plain = asyncio.ensure_future(worker.call(lambda: "plain"))
        second = [asyncio.ensure_future(worker.call_many(double, i)) for i in (4, 5)]
        await asyncio.sleep(0.05)
        gate.set()
        out = await asyncio.gather(blocker, *first, plain, *second, return_exceptions=True)
        worker.close()
        return out

    out = asyncio.run(scenario())
    assert calls == [[1, 2, 3], [4, 5]]  # grouped, and FIFO with the plain call between
    assert out[1:3] == [2, 4] and out[4:] == ["plain", 8, 10]
    assert isinstance(out[3], ValueError) and str(out[3]) == "odd 3"


def in_process(requests: Sequence[tuple[str, PointsBatch]], **kw: Any) -> dict[str, RunDetector]:
    """The detectors an in-process agent would have after the same batches (the reference the
    table's forecasts must equal once brought up to date)."""
    detectors: dict[str, RunDetector] = {}
    for run_id, b in requests:
        if run_id != "nope":
            points = sorted(((p["step"], float_values(p["values"])) for p in b.points), key=step_of)
            detector = detectors.setdefault(run_id, detector_for({"budget": 3000}, **kw))
            detector.update_many(points)
    return detectors


def step_of(point: tuple[int, Any]) -> int:
    return point[0]


def test_answers_come_before_their_forecast_which_then_equals_the_in_process_one() -> None:
    """A batch's answer has the current phase at once; its forecast waits for
    ``backlog.flush_oldest`` and is then exactly the in-process detector's."""
    lags: list[float] = []
    t = table()
    t.backlog.on_forecast = lags.append
    reference = in_process(REQUESTS)
    before = {rid: t.get(rid).detector.forecast for rid in ("a", "b")}
    for run_id, b in REQUESTS:
        if run_id == "nope":
            continue
        got = t.ingest(run_id, b)
        assert got.decision is not None and got.decision.forecast is before[run_id]
    assert len(t.backlog) == 2 and lags == []
    assert t.backlog.flush_oldest() == 0
    assert len(t.backlog) == 0 and len(lags) == 2 and min(lags) >= 0
    for rid in ("a", "b"):
        x, y = t.get(rid), reference[rid]
        assert x.detector.forecast is not None
        assert repr(x.detector.forecast) == repr(y.forecast)
        assert x.decision is not None and y.decision is not None
        # the same decision, but its change points are those confirmed since the last flush
        assert dataclasses.replace(x.decision, change_points=()) == dataclasses.replace(
            y.decision, change_points=()
        )
        assert set(y.decision.change_points) <= set(x.decision.change_points)
        assert x.detector.summary() == y.summary()


def test_a_read_or_a_finish_brings_the_forecast_up_to_date() -> None:
    t = table()
    requests = [("a", batch(range(0, 1600, 100))), ("b", batch(range(0, 600, 100)))]
    for run_id, b in requests:
        t.ingest(run_id, b)
    reference = in_process(requests)
    assert len(t.backlog) == 2
    assert repr(t.get("a").detector.forecast) == repr(reference["a"].forecast)
    assert len(t.backlog) == 1  # "b" still waits
    finished = t.finish("b", {})
    assert len(t.backlog) == 0
    assert repr(finished.detector.forecast) == repr(reference["b"].forecast)
    assert finished.summary == reference["b"].summary()


def test_the_backlog_brings_the_longest_waiting_runs_up_to_date_first() -> None:
    t = table()
    t.register(RunCreate(run_id="c", budget=3000))
    for rid in ("b", "c", "a"):
        t.ingest(rid, batch(range(0, 800, 100)))
    runs = {r.run_id: r for r in t.live()}  # no read through get(): that would flush
    assert len(t.backlog) == 3
    assert t.backlog.flush_oldest(1) == 2
    assert [rid for rid in "bca" if runs[rid].detector.pending] == ["c", "a"]
    assert t.backlog.flush_oldest(1) == 1
    assert [rid for rid in "bca" if runs[rid].detector.pending] == ["a"]
    assert t.backlog.flush_oldest() == 0
    assert not any(r.detector.pending for r in runs.values())


def test_change_points_of_forecasts_made_after_the_answer_come_with_the_next_answer() -> None:
    """A forecast confirms its change points after the batch was answered: the next answer
    carries them, so an agent sees every change point the in-process detector confirms."""
    forecaster = load_forecaster("default")
    factory = functools.partial(detector_for, forecaster=forecaster)
    t = RunTable(MemoryStore(), detector_factory=factory)
    t.register(RunCreate(run_id="a", budget=3000))
    reference = detector_for({"budget": 3000}, forecaster=forecaster)
    sent: list[Any] = []
    confirmed: list[Any] = []
    for i in range(31):
        b = batch([i * 100])
        answer = t.ingest("a", b)
        assert answer.decision is not None
        sent += answer.decision.change_points
        if i < 30:  # the last batch's own change points come with the next answer
            point = (i * 100, float_values(b.points[0]["values"]))
            confirmed += reference.update_many([point]).change_points
            t.backlog.flush_oldest(1)  # what the background task does after each answer
    assert len(confirmed) >= 1
    assert sent == confirmed


def test_a_failing_forecast_is_counted_and_the_others_go_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = table()
    for rid in ("a", "b"):
        t.ingest(rid, batch(range(0, 800, 100)))
    runs = {r.run_id: r for r in t.live()}
    assert t.backlog.next_points == 8 == runs["a"].detector.pending_points

    def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(runs["a"].detector, "flush", broken)
    assert t.backlog.flush_oldest() == 0  # "a" failed, "b" was still brought up to date
    assert t.backlog.failures == 1
    assert not runs["b"].detector.pending and t.backlog.next_points == 0
