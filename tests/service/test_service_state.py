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

from grokwatch.exceptions import StoreError, UnknownRunError
from grokwatch.service.state import Ingested, RunTable, detector_for, load_forecaster
from grokwatch.service.worker import Worker
from grokwatch.store import MemoryStore
from grokwatch.wire import PointsBatch, RunCreate


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


def deferred_table() -> RunTable:
    t = RunTable(MemoryStore(), detector_factory=detector_for, defer_forecasts=True)
    for rid in ("a", "b"):
        t.register(RunCreate(run_id=rid, budget=3000))
    return t


def test_deferred_forecasts_catch_up_to_the_inline_ones() -> None:
    """With ``defer_forecasts`` a batch's answer has the current phase at once; the forecast
    waits for ``flush_forecasts`` (or a read of the run) and is then the inline one."""
    deferred, inline = deferred_table(), table()
    for run_id, b in REQUESTS:
        if run_id == "nope":
            continue
        got, want = deferred.ingest(run_id, b), inline.ingest(run_id, b)
        assert (got.accepted, got.last_step, got.phase) == (
            want.accepted,
            want.last_step,
            want.phase,
        )
    assert deferred.forecast_backlog == 2
    assert deferred.flush_forecasts() == 0
    assert deferred.forecast_backlog == 0
    for rid in ("a", "b"):
        x, y = deferred.get(rid), inline.get(rid)
        assert repr(x.detector.forecast) == repr(y.detector.forecast)
        # the same decision, but its change points are those confirmed since the last flush
        assert x.decision is not None
        assert y.decision is not None
        assert dataclasses.replace(x.decision, change_points=()) == dataclasses.replace(
            y.decision, change_points=()
        )
        assert set(y.decision.change_points) <= set(x.decision.change_points)
        assert x.detector.summary() == y.detector.summary()


def test_a_read_or_a_finish_brings_the_forecast_up_to_date() -> None:
    deferred, inline = deferred_table(), table()
    for t in (deferred, inline):
        t.ingest("a", batch(range(0, 1600, 100)))
        t.ingest("b", batch(range(0, 600, 100)))
    assert deferred.forecast_backlog == 2
    assert repr(deferred.get("a").detector.forecast) == repr(inline.get("a").detector.forecast)
    assert deferred.forecast_backlog == 1  # "b" still waits
    finished = deferred.finish("b", {})
    assert deferred.forecast_backlog == 0
    assert finished.summary == inline.finish("b", {}).summary


def test_flush_forecasts_works_in_slices_and_oldest_first() -> None:
    t = deferred_table()
    t.register(RunCreate(run_id="c", budget=3000))
    for rid in ("b", "c", "a"):
        t.ingest(rid, batch(range(0, 800, 100)))
    runs = {r.run_id: r for r in t.live()}  # no read through get(): that would flush
    assert t.forecast_backlog == 3
    assert t.flush_forecasts(budget=0.0) == 2  # a zero budget still updates one run
    assert [rid for rid in "bca" if runs[rid].detector.pending] == ["c", "a"]
    assert t.flush_forecasts(budget=0.0) == 1
    assert [rid for rid in "bca" if runs[rid].detector.pending] == ["a"]
    assert t.flush_forecasts() == 0
    assert not any(r.detector.pending for r in runs.values())


def test_a_forecast_before_the_answer_catches_a_waiting_run_up() -> None:
    lags: list[float] = []
    t = RunTable(
        MemoryStore(), detector_factory=detector_for, defer_forecasts=True, on_forecast=lags.append
    )
    t.register(RunCreate(run_id="a", budget=3000))
    t.ingest("a", batch(range(0, 500, 100)))
    t.ingest("a", batch(range(500, 900, 100)))
    assert (t.forecast_backlog, t.deferred, lags) == (1, 2, [])
    t.ingest_many([("a", batch(range(900, 1300, 100)))], forecast=True)
    assert t.forecast_backlog == 0 and len(lags) == 1 and lags[0] >= 0
    inline = table()
    for steps in (range(0, 500, 100), range(500, 900, 100), range(900, 1300, 100)):
        inline.ingest("a", batch(steps))
    assert repr(t.get("a").detector.forecast) == repr(inline.get("a").detector.forecast)


def test_change_points_of_forecasts_made_after_the_answer_come_with_the_next_answer() -> None:
    """A deferred forecast confirms its change points after the batch was answered: the next
    answer carries them, so an agent sees every change point an inline service would send."""
    factory = functools.partial(detector_for, forecaster=load_forecaster("default"))
    sent = {}
    for deferred in (False, True):
        t = RunTable(MemoryStore(), detector_factory=factory, defer_forecasts=deferred)
        t.register(RunCreate(run_id="a", budget=5000))
        got: list[Any] = []
        for i in range(30):
            answer = t.ingest("a", batch([i * 100]))
            assert answer.decision is not None
            got += answer.decision.change_points
            t.flush_forecasts(0.0)  # what the background task does after each answer
        got += t.ingest("a", batch([3000])).decision.change_points  # type: ignore[union-attr]
        sent[deferred] = got
    assert len(sent[False]) >= 1
    assert sent[True] == sent[False]


def test_a_failing_deferred_forecast_is_counted_and_the_others_go_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = deferred_table()
    for rid in ("a", "b"):
        t.ingest(rid, batch(range(0, 800, 100)))
    runs = {r.run_id: r for r in t.live()}
    assert t.next_forecast_points == 8 == runs["a"].detector.pending_points

    def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(runs["a"].detector, "flush", broken)
    assert t.flush_forecasts() == 0  # "a" failed, "b" was still brought up to date
    assert t.forecast_failures == 1
    assert not runs["b"].detector.pending and t.next_forecast_points == 0
