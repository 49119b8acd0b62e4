"""RunDetector: a batch update equals one update per point, late points replay exactly from the
compact history, and that history costs a few bytes per evaluation."""

from __future__ import annotations

import itertools
import math
import random
import tracemalloc
from typing import Any

import numpy as np
import pytest
from forecast._forecast_synth import make_run
from hypothesis import given, settings
from hypothesis import strategies as st

from grokwatch import RunDetector
from grokwatch.decision import Forecast
from grokwatch.forecast import ConstantForecaster


class LastValueForecaster:
    """P(grok) is the last ``weight_norm`` seen (so the detector must keep a measure its rules
    do not read)."""

    class Run:
        columns = ("weight_norm",)
        change_points: tuple[Any, ...] = ()
        new_change_points: tuple[Any, ...] = ()

        def update_rows(self, steps: Any, rows: Any, absent: Any) -> Forecast:
            step, weight_norm = steps[-1], 0.0 if absent[-1, 0] else float(rows[-1, 0])
            p = min(max(weight_norm / 100.0, 0.0), 1.0)
            return Forecast(step=step, p_grok_horizon=p, horizon=100, p_grok_budget=p)

        def p_grok_within(self, budget: int) -> float | None:
            return None

    def start(self, *, budget: int | None, rules: Any = None, tracker: Any = None) -> Any:
        return self.Run()


FORECASTERS = {
    "default": lambda: "default",
    "none": lambda: None,
    "constant": lambda: ConstantForecaster(0.7),
    "last-value": LastValueForecaster,
}


def points(seed: int, n: int | None = None) -> list[tuple[int, dict[str, float]]]:
    run = make_run(seed, groks=seed % 2 == 0)
    out = [
        (int(s), {c: float(v) for c, v in zip(run.columns, run.values[i], strict=True)})
        for i, s in enumerate(run.steps[:n])
    ]
    for _, v in out[6:9]:  # a diverged stretch with a measure missing
        v["train_loss"] = math.nan
        v.pop("weight_norm", None)
    return out


def shuffled_batches(pts: list[Any], seed: int) -> list[list[Any]]:
    """Mostly in order, some points late, some twice; sorted within a batch (as the service)."""
    rng = random.Random(seed)
    order = list(range(len(pts)))
    for _ in range(len(pts) // 6):
        i, j = rng.randrange(len(order)), rng.randrange(len(order))
        order[i], order[j] = order[j], order[i]
    order += rng.sample(range(len(pts)), 5)
    batches, i = [], 0
    while i < len(order):
        size = rng.randint(1, 12)
        batches.append(sorted((pts[k] for k in order[i : i + size]), key=lambda p: p[0]))
        i += size
    return batches


def same_state(a: RunDetector, b: RunDetector) -> None:
    assert repr(a.decision) == repr(b.decision)  # repr: NaN fields compare equal
    assert repr(a.forecast) == repr(b.forecast)
    assert a.events == b.events or repr(a.events) == repr(b.events)
    assert a.phase is b.phase
    assert list(a.change_points) == list(b.change_points)
    assert a.summary() == b.summary()


@pytest.mark.parametrize("forecaster", list(FORECASTERS))
@pytest.mark.parametrize("seed", [0, 1])
def test_a_batch_update_leaves_what_one_update_per_point_leaves(forecaster: str, seed: int):
    pts = points(seed, 60)
    batched = RunDetector(budget=20_000, forecaster=FORECASTERS[forecaster]())
    single = RunDetector(budget=20_000, forecaster=FORECASTERS[forecaster]())
    for batch in shuffled_batches(pts, seed):
        decision = batched.update_many(batch)
        for step, values in batch:
            expected = single.observe(step, values)
        assert repr(decision) == repr(expected)
        same_state(batched, single)
    assert batched.decision is not None and batched.decision.step == max(s for s, _ in pts)


@pytest.mark.parametrize("forecaster", list(FORECASTERS))
def test_late_points_are_judged_as_if_they_had_come_in_order(forecaster: str):
    """The late arrivals are replayed from the compact history: odd values (ints, numpy
    scalars, None, a string, NaN, inf) and a measure that first shows up midway included."""
    pts = points(3, 40)
    pts[4][1]["train_loss_step"] = None  # present but None: not the same as absent
    pts[5][1]["test_accuracy"] = np.float32(0.25)  # type: ignore[assignment]
    pts[7][1]["train_accuracy"] = 1  # type: ignore[assignment]
    pts[9][1]["note"] = "a string"  # type: ignore[assignment]
    pts[11][1]["test_loss"] = math.inf
    for _, v in pts[20:]:
        v["fourier_gini"] = 0.3
    in_order = RunDetector(budget=20_000, forecaster=FORECASTERS[forecaster]())
    for step, values in pts:
        in_order.observe(step, values)
    late = RunDetector(budget=20_000, forecaster=FORECASTERS[forecaster]())
    order = [*range(25, 40), *range(0, 25)]
    for i in order:
        late.observe(*pts[i])
    late.observe(*pts[-1])  # a duplicate: the decision is remade without change points
    in_order.observe(*pts[-1])
    same_state(late, in_order)


def test_phase_changes_count_each_change_between_updates():
    pts = points(0)
    det = RunDetector(forecaster=None)
    phases = [det.observe(s, v).phase for s, v in pts]
    changes = sum(1 for a, b in itertools.pairwise(phases) if a is not b)
    assert changes >= 2 and det.phase_changes == changes
    batched = RunDetector(forecaster=None)
    for i in range(0, len(pts), 7):
        batched.update_many(pts[i : i + 7])
    assert batched.phase_changes == changes


def held_bytes(make: Any, pts: list[tuple[int, dict[str, float]]]) -> int:
    make().update_many(pts[:5])  # load the forecaster's model outside the measurement
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        det = make()
        for i in range(0, len(pts), 50):
            det.update_many(pts[i : i + 50])
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("forecaster", "most"), [("none", 80), ("default", 200), ("last-value", 400)]
)
def test_the_history_costs_a_few_bytes_per_evaluation(forecaster: str, most: int):
    """2000 evaluations of 40 measures: only what the rules and the forecaster read is kept,
    in arrays (a dict per evaluation held ~1 KB each)."""
    rng = np.random.default_rng(0)
    names = [f"probe_{i}" for i in range(36)]
    pts = [
        (
            100 * (i + 1),
            {
                "train_accuracy": min(1.0, i / 50),
                "test_accuracy": 0.05,
                "train_loss": 1.0 / (i + 1),
                "weight_norm": 30.0 + 0.01 * i,
                **dict(zip(names, rng.random(len(names)).tolist(), strict=True)),
            },
        )
        for i in range(2000)
    ]

    def make() -> RunDetector:
        return RunDetector(budget=10**6, forecaster=FORECASTERS[forecaster]())

    small, large = held_bytes(make, pts[:500]), held_bytes(make, pts)
    per_evaluation = (large - small) / 1500
    assert per_evaluation < most, per_evaluation


def test_no_points_change_nothing():
    det = RunDetector(forecaster=None)
    with pytest.raises(ValueError, match="at least one point"):
        det.update_many([])
    first = det.update_many(points(0, 3))
    assert det.update_many([]) is first and det.decision is first


@pytest.mark.parametrize("forecaster", list(FORECASTERS))
@pytest.mark.parametrize("seed", [0, 1])
def test_deferred_forecasts_after_a_flush_equal_the_undeferred_ones(forecaster: str, seed: int):
    """``forecast=False`` keeps the phase current and the forecast as it was; ``flush`` then
    leaves the forecast, events and summary an undeferred detector has (late points too)."""
    pts = points(seed, 60)
    deferred = RunDetector(budget=20_000, forecaster=FORECASTERS[forecaster]())
    undeferred = RunDetector(budget=20_000, forecaster=FORECASTERS[forecaster]())
    flushes = 0
    for i, batch in enumerate(shuffled_batches(pts, seed)):
        before = deferred.forecast
        decision = deferred.update_many(batch, forecast=False)
        expected = undeferred.update_many(batch)
        assert deferred.forecast is before  # not touched
        assert decision.phase is expected.phase
        assert decision.step == expected.step
        if forecaster == "none":
            assert not deferred.pending
        if i % 3 == 2:  # several batches wait for one flush
            flushed = deferred.flush()
            flushes += flushed is not None
            assert not deferred.pending
            assert deferred.flush() is None  # nothing left
            assert repr(deferred.forecast) == repr(undeferred.forecast)
            assert deferred.summary() == undeferred.summary()
            assert list(deferred.change_points) == list(undeferred.change_points)
    deferred.flush()
    assert repr(deferred.forecast) == repr(undeferred.forecast)
    assert deferred.phase is undeferred.phase
    assert (flushes == 0) == (forecaster == "none")


def test_a_detector_without_forecaster_keeps_nothing_pending():
    detector = RunDetector(forecaster=None)
    for step, values in points(0, 30):
        detector.update_many([(step, values)], forecast=False)
    assert not detector.pending
    assert detector._pending == 0
    assert detector.flush() is None


_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(math.copysign(math.nan, -1.0)),
    st.integers(-5, 5),
    st.none(),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["train_accuracy", "test_accuracy", "weight_norm", "note"]), _value
        ),
        min_size=1,
        max_size=12,
    ),
    st.integers(1, 4),
)
def test_a_batch_stored_at_once_reads_back_as_one_point_at_a_time(values, cut):
    one, many = _stored_both_ways(values, cut)
    assert list(many.steps) == list(one.steps)


_floats = st.one_of(st.floats(allow_nan=True), st.just(math.copysign(math.nan, -1.0)))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"train_accuracy": _floats, "test_accuracy": _floats, "weight_norm": _floats},
            optional={"note": _floats},
        ),
        min_size=1,
        max_size=12,
    ),
    st.integers(1, 4),
)
def test_a_batch_with_every_measure_as_floats_reads_back_as_one_point_at_a_time(values, cut):
    """The common case, read in C: a measured -NaN stays a measured NaN, not an absent one."""
    _, many = _stored_both_ways(values, cut, batch_taken=True)
    assert all(len(v) == 3 for _, v in many)  # every measure present


def _stored_both_ways(values, cut, *, batch_taken=False):
    """The points stored one at a time and in two batches split at ``cut`` (a batch the
    history does not take is added one at a time, unless ``batch_taken``): the same reads."""
    from grokwatch.detector import _Evaluations

    keep = ("test_accuracy", "train_accuracy", "weight_norm")
    pts = [(10 * (i + 1), v) for i, v in enumerate(values)]
    one, many = _Evaluations(keep), _Evaluations(keep)
    for p in pts:
        one.add(*p)
    for batch in (pts[:cut], pts[cut:]):
        if batch and not many.extend(batch):
            assert not batch_taken
            for p in batch:
                many.add(*p)

    def read(history):  # column order may differ; NaN compares by its repr
        return [(step, sorted(v.items(), key=repr)) for step, v in history]

    assert repr(read(many)) == repr(read(one))
    return one, many


@pytest.mark.parametrize("n", [3, 200], ids=["a few points", "many points"])
def test_a_measured_negative_nan_is_kept_as_a_measured_nan(n: int):
    from grokwatch.detector import _Evaluations

    neg = math.copysign(math.nan, -1.0)
    keep = ("test_accuracy", "train_accuracy")
    pts = [(i + 1, {"train_accuracy": neg, "test_accuracy": 0.5}) for i in range(n)]
    history = _Evaluations(keep)
    assert history.extend(pts)
    for _, values in history:  # present, as NaN: not taken for an absent measure
        assert set(values) == {"train_accuracy", "test_accuracy"}
        assert math.isnan(values["train_accuracy"]) and values["test_accuracy"] == 0.5
