"""RunPolicy: stop hopeless and finished runs, extend runs about to grok, never raise.

A scripted forecaster (a test double: P(grok within budget) and P(grok by a later step) given
per step) drives the detector; the phases come from real accuracies through the event rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from grokwatch import Action, Forecast, ForecastReason, Reason, RunDetector, RunPolicy
from grokwatch.decision import ChangePoint, Phase
from grokwatch.events import EventRules
from grokwatch.exceptions import ConfigError
from grokwatch.forecast.io import load_default
from grokwatch.policy import stop_statistic

P = Callable[[int], float]


class _ScriptedRun:
    change_points: tuple[ChangePoint, ...] = ()
    new_change_points: tuple[ChangePoint, ...] = ()
    columns: tuple[str, ...] = ()

    def __init__(self, p: P, p_by: Callable[[int], float | None], confidence: float) -> None:
        self.p, self.p_by, self.confidence = p, p_by, confidence

    def update_rows(self, steps: Sequence[int], rows: Any, absent: Any) -> Forecast:
        step = steps[-1]
        p = self.p(step)
        return Forecast(
            step=step,
            p_grok_horizon=p,
            horizon=1000,
            p_grok_budget=p,
            t_grok=12_000.0,
            t_grok_low=10_500.0,
            t_grok_high=13_000.0,
            confidence=self.confidence,
            reason=ForecastReason.OK,
            hopeless=p <= 0.05 and self.confidence >= 0.5,
            message=f"scripted P={p:.2f}",
        )

    def p_grok_within(self, budget: int) -> float | None:
        return self.p_by(budget)


class Scripted:
    """Forecasts ``p(step)``; ``p_by(budget)`` answers P(grok within a larger budget)."""

    def __init__(
        self,
        p: P,
        p_by: Callable[[int], float | None] = lambda b: None,
        confidence: float = 1.0,
    ) -> None:
        self.p, self.p_by, self.confidence = p, p_by, confidence

    def start(
        self, *, budget: int | None, rules: EventRules | None = None, tracker: object = None
    ) -> _ScriptedRun:
        return _ScriptedRun(self.p, self.p_by, self.confidence)


def plateau(step: int) -> dict[str, float]:
    """Memorized at step 200, test accuracy flat at 0.05: phase plateau."""
    return {"train_accuracy": 1.0 if step >= 200 else 0.5, "test_accuracy": 0.05}


def run(det: RunDetector, steps: range, values: Callable[[int], dict[str, float]] = plateau):
    return [det.observe(s, values(s)) for s in steps]


def test_hopeless_stop_after_patience_and_min_fraction() -> None:
    policy = RunPolicy(hopeless_threshold=0.1, patience=3, min_fraction=0.2)
    det = RunDetector(budget=10_000, forecaster=Scripted(lambda s: 0.01), policy=policy)
    decisions = run(det, range(0, 10_000, 500))
    stops = [d for d in decisions if d.action is Action.STOP]
    assert stops, "a confidently hopeless run must be stopped"
    first = stops[0]
    # 2000 is the first step at 20 % of the budget; the third hopeless evaluation is 3000
    assert first.step == 3000
    assert first.reason is Reason.HOPELESS
    assert "hopeless" in first.message and "0.100" in first.message
    assert all(d.action is Action.CONTINUE for d in decisions if d.step < 3000)
    assert det.control is not None and [a.step for a in det.control.actions] == [3000]
    assert det.summary()["control"]["actions"][0]["reason"] == "hopeless"


def test_low_confidence_never_stops() -> None:
    policy = RunPolicy(hopeless_threshold=0.1, extend=False)
    det = RunDetector(
        budget=10_000, forecaster=Scripted(lambda s: 0.0, confidence=0.3), policy=policy
    )
    assert all(d.action is Action.CONTINUE for d in run(det, range(0, 10_000, 250)))


def test_never_stops_in_phase_grokking() -> None:
    def rising(step: int) -> dict[str, float]:  # a plateau, then test accuracy climbs slowly
        climb = max(step - 4000, 0) / 20_000
        return {"train_accuracy": 1.0, "test_accuracy": min(0.05 + climb, 0.85)}

    policy = RunPolicy(hopeless_threshold=0.5, patience=1, min_fraction=0.0, extend=False)
    forecaster = Scripted(lambda s: 0.9 if s < 6000 else 0.0)  # hopeless once it grokks
    det = RunDetector(budget=20_000, forecaster=forecaster, policy=policy)
    decisions = run(det, range(0, 20_000, 500), rising)
    grokking = [d for d in decisions if d.phase is Phase.GROKKING]
    assert grokking and all(d.action is Action.CONTINUE for d in grokking)
    assert "not stopped: phase grokking" in grokking[-1].message


def test_finished_stop_after_patience() -> None:
    def groks(step: int) -> dict[str, float]:
        return {"train_accuracy": 1.0, "test_accuracy": 0.95 if step >= 3000 else 0.05}

    det = RunDetector(
        budget=10_000, forecaster=Scripted(lambda s: 0.5), policy=RunPolicy(finish_patience=2)
    )
    decisions = run(det, range(0, 6000, 500), groks)
    stops = [d for d in decisions if d.should_stop]
    assert stops[0].step == 4000 and stops[0].reason is Reason.FINISHED  # t_grok + 2 evaluations
    # a stop stands: the next evaluations still say stop, recorded once
    assert all(d.should_stop for d in decisions if d.step >= 4000)
    assert det.control is not None and len(det.control.actions) == 1


def test_extension_at_the_budget_is_bounded() -> None:
    policy = RunPolicy(max_extension=0.3, extend_probability=0.6, stop_hopeless=False)
    det = RunDetector(
        budget=10_000, forecaster=Scripted(lambda s: 0.2, p_by=lambda b: 0.9), policy=policy
    )
    decisions = run(det, range(0, 20_000, 500))
    extends = [d for d in decisions if d.should_extend]
    assert extends[0].step == 9500  # the last evaluation before the budget
    assert extends[0].reason is Reason.GROKS_AFTER_BUDGET
    # t_grok_high 13000 + one evaluation - 10000, capped at 30 % of the budget
    assert extends[0].extend_steps == 3000
    assert det.control is not None
    assert det.control.extended <= 3000 and det.control.budget == 13_000
    assert sum(d.extend_steps for d in extends) <= 3000


def test_no_extension_when_unlikely_or_turned_off() -> None:
    for policy, p_by in (
        (RunPolicy(stop_hopeless=False), 0.2),
        (RunPolicy(stop_hopeless=False, extend=False), 0.99),
    ):
        det = RunDetector(
            budget=10_000,
            forecaster=Scripted(lambda s: 0.2, p_by=lambda b, v=p_by: v),
            policy=policy,
        )
        assert not any(d.should_extend for d in run(det, range(0, 12_000, 500)))


def test_actions_turned_off_never_stop() -> None:
    policy = RunPolicy(
        hopeless_threshold=0.5, stop_hopeless=False, stop_finished=False, extend=False
    )
    det = RunDetector(budget=5000, forecaster=Scripted(lambda s: 0.0), policy=policy)
    assert all(d.action is Action.CONTINUE for d in run(det, range(0, 5000, 250)))


def test_without_a_policy_every_decision_continues() -> None:
    det = RunDetector(budget=5000, forecaster=Scripted(lambda s: 0.0))
    decisions = run(det, range(0, 5000, 250))
    assert all(d.action is Action.CONTINUE for d in decisions)
    assert decisions[-1].reason is Reason.HOPELESS
    assert "control" not in det.summary()


def test_policy_never_raises_into_training() -> None:
    def broken(budget: int) -> float:
        raise RuntimeError("boom")

    det = RunDetector(
        budget=10_000,
        forecaster=Scripted(lambda s: 0.3, p_by=broken),
        policy=RunPolicy(stop_hopeless=False),
    )
    decisions = run(det, range(0, 10_000, 500))
    failed = [d for d in decisions if d.reason is Reason.POLICY_ERROR]
    assert failed and all(d.action is Action.CONTINUE for d in failed)
    assert "boom" in failed[0].message
    assert det.control is not None and det.control.errors == len(failed)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("risk", 0.5),
        ("risk", -0.1),
        ("patience", 0),
        ("max_extension", -1.0),
        ("extend", "yes"),
        ("hopeless_threshold", 2.0),
        ("min_fraction", math.nan),
    ],
)
def test_bad_settings_name_the_value(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        RunPolicy(**{field: value})  # type: ignore[arg-type]


def test_policy_round_trips_as_json() -> None:
    policy = RunPolicy(risk=0.02, patience=4, extend=False, max_extension=0.5)
    assert RunPolicy.from_json(policy.to_json()) == policy
    with pytest.raises(ConfigError, match="unknown run policy settings: nope"):
        RunPolicy.from_json({"nope": 1})


def test_calibrated_threshold_grows_with_the_risk() -> None:
    model = load_default()
    thresholds = [RunPolicy(risk=r).calibrated_threshold(model, 500) for r in (0.0, 0.01, 0.05)]
    assert all(t is not None and 0.0 <= t <= 0.5 for t in thresholds)
    assert thresholds == sorted(thresholds)
    assert thresholds[0] < thresholds[2]
    # another forecaster is not covered by the calibration: its own flag is used
    assert RunPolicy().calibrated_threshold(Scripted(lambda s: 0.0), 500) is None


def test_stop_statistic_is_the_smallest_window_maximum() -> None:
    steps = np.arange(0, 1000, 100)
    p = np.array([0.9, 0.2, 0.1, 0.3, 0.05, 0.04, 0.5, 0.01, 0.02, 0.03])
    eligible = np.ones(10, dtype=bool)
    assert stop_statistic(steps, p, eligible, None, 1000, 1, 0.0) == 0.01
    assert stop_statistic(steps, p, eligible, None, 1000, 2, 0.0) == 0.02
    assert stop_statistic(steps, p, eligible, 700, 1000, 2, 0.0) == 0.05  # before t_grok only
    eligible[4] = False
    assert stop_statistic(steps, p, eligible, 700, 1000, 2, 0.0) == 0.2
    assert stop_statistic(steps, p, eligible, 700, 1000, 2, 0.5) == 0.5  # steps 500, 600
    assert stop_statistic(steps, p, eligible, 700, 1000, 2, 0.6) == math.inf
