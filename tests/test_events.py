from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from grokwatch import ConfigError, EventRules, Outcome, Phase
from grokwatch.events import EventTracker, fit_sigmoid, outcome


def feed(tracker: EventTracker, rows):
    for step, tr, te, *loss in rows:
        tracker.update(step, train_acc=tr, test_acc=te, train_loss=loss[0] if loss else 0.1)
    return tracker


def test_grokking_run_events_and_phases():
    t = EventTracker()
    phases = []
    rows = [
        (0, 0.1, 0.05),
        (100, 0.6, 0.05),
        (200, 1.0, 0.04),
        (1000, 1.0, 0.03),
        (2000, 1.0, 0.2),
        (2100, 1.0, 0.5),
        (2200, 1.0, 0.95),
        (2300, 1.0, 0.99),
    ]
    for row in rows:
        feed(t, [row])
        phases.append(t.phase)
    assert phases == [
        Phase.MEMORIZING,
        Phase.MEMORIZING,
        Phase.PLATEAU,
        Phase.PLATEAU,
        Phase.GROKKING,
        Phase.GROKKING,
        Phase.GENERALIZED,
        Phase.GENERALIZED,
    ]
    ev = t.events
    assert (ev.t_mem, ev.t_grok, ev.gap) == (200, 2200, 2000)
    # rise from 0.03 (low after t_mem) to 0.99: 10 % = 0.126 reached at 2000 + 100*(0.126-0.03)/0.17
    # ... precisely by linear interpolation; 90 % = 0.894 reached inside (2100, 2200)
    low, high = 0.03, 0.99
    t10 = 1000 + 1000 * (low + 0.1 * (high - low) - 0.03) / (0.2 - 0.03)
    t90 = 2100 + 100 * (low + 0.9 * (high - low) - 0.5) / (0.95 - 0.5)
    assert ev.sharpness == pytest.approx((t90 - t10) / 2200)
    assert t.outcome() is Outcome.GROKKING
    assert t.outcome(budget=2100) is Outcome.MEMORIZATION
    assert t.outcome(budget=150) is Outcome.CONFUSION


def test_outcome_rule():
    assert outcome(100, 2000) is Outcome.GROKKING
    assert outcome(100, 300, min_gap=250) is Outcome.COMPREHENSION  # gap 200 < 250
    assert outcome(1000, 1800, min_gap=250) is Outcome.COMPREHENSION  # gap 800 < t_mem
    assert outcome(None, 500) is Outcome.COMPREHENSION
    assert outcome(100, None) is Outcome.MEMORIZATION
    assert outcome(None, None) is Outcome.CONFUSION


def test_confused_when_train_accuracy_stalls():
    t = EventTracker(EventRules(patience=3))
    feed(t, [(i * 10, 0.3 + 0.001 * i, 0.01) for i in range(8)])
    assert t.phase is Phase.CONFUSED
    feed(t, [(100, 0.5, 0.01)])
    assert t.phase is Phase.MEMORIZING


def test_nonfinite_loss_is_diverged_and_nan_accuracy_is_ignored():
    t = EventTracker()
    feed(t, [(0, 0.5, 0.1, math.nan)])
    assert t.phase is Phase.DIVERGED
    feed(t, [(10, math.nan, math.inf, 0.3)])
    assert t.t_mem is None and t.t_grok is None
    assert t.phase is Phase.MEMORIZING


@pytest.mark.parametrize(
    ("name", "value"), [("grok_threshold", 1.5), ("rise", 0.0), ("min_gap", -1), ("patience", 0)]
)
def test_rules_validate(name, value):
    with pytest.raises(ConfigError, match=name):
        EventRules(**{name: value})


def test_fit_sigmoid_recovers_parameters():
    steps = np.arange(0, 5000, 50, dtype=float)
    acc = 0.02 + (0.98 - 0.02) / (1 + np.exp(-0.01 * (steps - 2500)))
    fit = fit_sigmoid(steps, acc)
    assert fit is not None
    assert fit["t0"] == pytest.approx(2500, rel=0.01)
    assert fit["k"] == pytest.approx(0.01, rel=0.05)
    assert fit_sigmoid(steps[:3], acc[:3]) is None


@given(
    patience=st.integers(1, 6),
    accs=st.lists(st.one_of(st.just(math.nan), st.floats(0.0, 0.98)), max_size=30),
)
def test_stalled_running_max_equals_the_windowed_definition(patience, accs):
    """The O(patience) confusion rule equals max(last window) − max(before) < min_delta."""
    tracker = EventTracker(EventRules(patience=patience, min_delta=0.01))
    seen: list[float] = []
    for i, acc in enumerate(accs):
        tracker.update(i, train_acc=acc, test_acc=0.0, train_loss=1.0)
        if not math.isnan(acc):
            seen.append(acc)
        expected = len(seen) > patience and max(seen[-patience:]) - max(seen[:-patience]) < 0.01
        assert tracker._stalled() == expected


_acc = st.one_of(st.none(), st.floats(0.0, 1.0), st.sampled_from([0.99, 0.9, math.nan, math.inf]))
