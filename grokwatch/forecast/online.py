"""The forecaster online: one state per run, one :class:`~grokwatch.Forecast` per evaluation.

The detector talks to forecasters through two small interfaces:

- :class:`Forecaster` -- ``start(budget=, rules=, tracker=)`` opens a run and returns its
  :class:`RunForecaster`;
- :class:`RunForecaster` -- ``update_rows(steps, rows, absent)`` adds evaluations in step
  order, given as arrays over its ``columns`` (the measures it reads; the detector keeps only
  those for replaying late points, as arrays, and hands them over without a dict per
  evaluation), and returns the forecast at the last (``None`` when it has none);
  ``change_points`` / ``new_change_points`` list the change points it found;
  ``p_grok_within(budget)`` answers the run policy's question for a budget extension.

:class:`~grokwatch.forecast.forecaster.GrokForecaster` implements ``start`` with
:class:`GrokRunForecaster` below. :class:`NullForecaster` (no forecasts: the rule-based detector)
and :class:`ConstantForecaster` (a fixed probability, deterministic, for tests and demos)
are the null object and the test double.

Confidence and reasons (:class:`~grokwatch.ForecastReason`), in the order they multiply in:

- fewer than :data:`FULL_POINTS` evaluations: ``n / FULL_POINTS`` (``TOO_FEW_POINTS``);
- features that are NaN (measures never reported): ``1 - share`` of the model's weight on
  them (``MISSING_MEASURES``; ``missing`` names the key measures that are absent);
- no budget: ``1 - share`` of the model's weight on the budget features (``BUDGET_UNKNOWN``:
  "within budget" means little without one; the time estimate does not use the budget);
  non-finite values at this step: ``0.5`` (``NON_FINITE``); a non-finite training loss:
  ``0.2`` (``DIVERGED``).

A forecast *alerts* when P(grok within budget) is at least the model's alert threshold and
the confidence is at least :data:`MIN_CONFIDENCE`; it is *hopeless* when P is at most the
hopeless threshold with that confidence, and the run has
memorized (or stalled, or spent its budget): while it is still memorizing, or generalizing
(phase ``grokking``: its test accuracy is rising), it is never called hopeless
(:data:`NEVER_HOPELESS`). After ``t_grok`` the forecast is certain (``GENERALIZED``); past
the budget without grokking, P(grok within budget) is 0 (``BUDGET_EXHAUSTED``). Bad input
never raises.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from grokwatch.decision import ChangePoint, Forecast, ForecastReason, Phase
from grokwatch.events import EventRules, EventTracker
from grokwatch.forecast.features import (
    FEATURE_NAMES,
    INPUT_COLUMNS,
    FeatureState,
    rows_of,
)

__all__ = [
    "FULL_POINTS",
    "MIN_CONFIDENCE",
    "NEVER_HOPELESS",
    "ConstantForecaster",
    "Context",
    "FittedModel",
    "Forecaster",
    "GrokRunForecaster",
    "NullForecaster",
    "RowPrediction",
    "RunForecaster",
    "assemble",
]

FULL_POINTS = 4
"""Evaluations needed before the trend features count fully."""
MIN_CONFIDENCE = 0.5
"""Confidence a forecast needs before it may alert or call a run hopeless."""
NEVER_HOPELESS = (Phase.MEMORIZING, Phase.GROKKING)
"""Phases in which a run within its budget is never called hopeless: before it has memorized
nothing yet tells a run that will generalize from one that will not, and while its test
accuracy rises it is visibly generalizing (a held-out transformer was called hopeless at
P < 1e-8 in this phase, 850-950 steps before it grokked: ``benchmarks/lofo_hopeless_calls.py``
on the leave-one-family-out run of grokwatch 51c6a42)."""


Point = tuple[int, Mapping[str, float]]


class RunForecaster(Protocol):
    """One run's forecasting state: everything the detector calls."""

    @property
    def columns(self) -> tuple[str, ...]:
        """The measures :meth:`update_rows` reads, in the order of its columns."""

    @property
    def change_points(self) -> Sequence[ChangePoint]:
        """Every change point confirmed so far."""

    @property
    def new_change_points(self) -> Sequence[ChangePoint]:
        """The change points confirmed by the latest update."""

    def update_rows(
        self, steps: Sequence[int], rows: np.ndarray, absent: np.ndarray
    ) -> Forecast | None:
        """Add evaluations in step order (a step not after the last is ignored): ``rows[i]``
        holds the values of :attr:`columns` at ``steps[i]`` (NaN where not a number),
        ``absent[i]`` which of them were not reported. The forecast at the last one."""

    def p_grok_within(self, budget: int) -> float | None:
        """P(t_grok <= ``budget``) at the newest evaluation, as if the run's budget were
        ``budget``; ``None`` when it cannot say. The run policy
        (:class:`~grokwatch.policy.RunControl`) asks it before extending a run and, within an
        extension, before calling the run hopeless."""


class Forecaster(Protocol):
    """Opens per-run forecasting states."""

    def start(
        self,
        *,
        budget: int | None,
        rules: EventRules | None = None,
        tracker: EventTracker | None = None,
    ) -> RunForecaster:
        """A run's forecasting state. ``tracker``: the run's event tracker, which the caller
        feeds every evaluation before handing it over (the state then reads its events
        instead of tracking them again); ``None``: the state tracks them itself."""


class RowPrediction:
    """The numbers ``GrokForecaster.predict_row`` gives for one row."""

    __slots__ = ("p_budget", "p_horizon", "t_grok", "t_high", "t_low")

    def __init__(self, p_budget: float) -> None:
        self.p_budget = p_budget
        self.p_horizon = math.nan
        self.t_grok: float | None = None
        self.t_low: float | None = None
        self.t_high: float | None = None


@runtime_checkable
class FittedModel(Protocol):
    """What a run's forecast reads of a fitted
    :class:`~grokwatch.forecast.forecaster.GrokForecaster` (``isinstance`` tells a fitted
    one: an unfitted estimator lacks the attributes ending in ``_``)."""

    @property
    def horizon(self) -> int: ...
    @property
    def feature_weight_(self) -> np.ndarray: ...
    @property
    def alert_threshold_(self) -> float: ...
    @property
    def hopeless_threshold_(self) -> float: ...

    def predict_row(
        self, x: np.ndarray, step: int, horizon: int | None = None
    ) -> RowPrediction: ...


@dataclasses.dataclass(frozen=True)
class Context:
    """What besides the feature vector shapes a forecast at one step."""

    step: int
    n_points: int
    budget: int | None
    t_grok: int | None
    phase: Phase
    missing: tuple[str, ...]
    non_finite: bool

    @classmethod
    def of(cls, state: FeatureState) -> Context:
        """The context at the last evaluation ``state`` took."""
        return cls(
            step=state.last_step or 0,
            n_points=state.n_points,
            budget=state.budget,
            t_grok=state.tracker.t_grok,
            phase=state.tracker.phase,
            missing=state.missing,
            non_finite=state.last_non_finite > 0,
        )


def assemble(model: FittedModel, x: np.ndarray, ctx: Context) -> Forecast:
    """The forecast for feature vector ``x`` in context ``ctx`` (the one place the rules of
    the module docstring live; used online and by the offline evaluation alike)."""
    h = model.horizon
    if ctx.t_grok is not None:
        t = float(ctx.t_grok)
        return Forecast(
            step=ctx.step,
            p_grok_horizon=1.0,
            horizon=h,
            p_grok_budget=1.0,
            t_grok=t,
            t_grok_low=t,
            t_grok_high=t,
            confidence=1.0,
            reason=ForecastReason.GENERALIZED,
            phase=ctx.phase,
            message=f"generalized at step {ctx.t_grok}",
        )
    row = model.predict_row(x, ctx.step)
    p_budget, p_h = row.p_budget, row.p_horizon
    reasons: list[tuple[ForecastReason, str]] = []
    confidence = 1.0
    if ctx.phase is Phase.DIVERGED:
        confidence *= 0.2
        reasons.append((ForecastReason.DIVERGED, "training loss is not finite"))
    spent = ctx.budget is not None and ctx.step > ctx.budget
    if spent:
        p_budget, p_h = 0.0, 0.0
        reasons.append((ForecastReason.BUDGET_EXHAUSTED, f"past the budget of {ctx.budget}"))
    if ctx.non_finite:
        confidence *= 0.5
        reasons.append((ForecastReason.NON_FINITE, "non-finite values ignored"))
    if ctx.n_points < FULL_POINTS:
        confidence *= ctx.n_points / FULL_POINTS
        reasons.append(
            (ForecastReason.TOO_FEW_POINTS, f"{ctx.n_points} of {FULL_POINTS} evaluations")
        )
    nan = ~np.isfinite(x)
    if ctx.budget is None:
        budget_share = float(model.feature_weight_[_BUDGET_FEATURES].sum())
        confidence *= max(1.0 - budget_share, 0.0)
        reasons.append(
            (
                ForecastReason.BUDGET_UNKNOWN,
                f"no budget given ({budget_share:.0%} of model weight); pass budget=",
            )
        )
        nan[_BUDGET_FEATURES] = False
    share = float(model.feature_weight_[nan].sum()) if nan.any() else 0.0
    if share > 0.01 or ctx.missing:
        confidence *= max(1.0 - share, 0.0)
        what = ", ".join(ctx.missing) if ctx.missing else "some measures"
        reasons.append(
            (ForecastReason.MISSING_MEASURES, f"missing {what} ({share:.0%} of model weight)")
        )
    confidence = min(max(confidence, 0.0), 1.0)
    sure = confidence >= MIN_CONFIDENCE
    alert = sure and p_budget >= model.alert_threshold_
    # hopeless needs a spent run, or one that has memorized and is not generalizing
    can_tell = spent or ctx.phase not in NEVER_HOPELESS
    hopeless = sure and can_tell and p_budget <= model.hopeless_threshold_
    reason = reasons[0][0] if reasons else ForecastReason.OK
    message = f"P(grok within budget)={p_budget:.2f}"
    if row.t_grok is not None:
        message += f", t_grok~{row.t_grok:.0f} [{row.t_low:.0f}, {row.t_high:.0f}]"
    if reasons:
        message += "; " + "; ".join(text for _, text in reasons)
    return Forecast(
        step=ctx.step,
        p_grok_horizon=p_h,
        horizon=h,
        p_grok_budget=p_budget,
        t_grok=row.t_grok,
        t_grok_low=row.t_low,
        t_grok_high=row.t_high,
        confidence=confidence,
        reason=reason,
        phase=ctx.phase,
        alert=alert,
        hopeless=hopeless,
        message=message,
        missing=ctx.missing,
    )


_BUDGET_FEATURES = [FEATURE_NAMES.index(n) for n in ("log_budget_over_t", "projected_grok_margin")]


class GrokRunForecaster:
    """:class:`RunForecaster` of a fitted ``GrokForecaster``: features and assembly."""

    columns: ClassVar[tuple[str, ...]] = INPUT_COLUMNS

    def __init__(
        self,
        model: FittedModel,
        *,
        budget: int | None = None,
        rules: EventRules | None = None,
        tracker: EventTracker | None = None,
        changepoints: str = "bayes",
    ) -> None:
        self.model = model
        self.state = FeatureState(
            budget=budget, rules=rules, tracker=tracker, changepoints=changepoints
        )
        self.forecast: Forecast | None = None

    @property
    def change_points(self) -> Sequence[ChangePoint]:
        return self.state.change_points

    @property
    def new_change_points(self) -> Sequence[ChangePoint]:
        return self.state.new_change_points

    def update(self, step: int, values: Mapping[str, float]) -> Forecast | None:
        return self.update_many(((step, values),))

    def update_many(self, points: Sequence[Point]) -> Forecast | None:
        """:meth:`update_rows` with the evaluations as points."""
        return self.update_rows(*rows_of(points)) if points else self.forecast

    def update_rows(
        self, steps: Sequence[int], rows: np.ndarray, absent: np.ndarray
    ) -> Forecast | None:
        """Add evaluations in order; the forecast at the last new one (a step not after the
        last step is ignored), equal to ``update`` on each in turn, with one prediction and
        the features brought up to date in one pass of array operations."""
        last = self.state.last_step
        if len(steps) and (last is None or max(steps) > last):
            self.state.add_rows(steps, rows, absent)
            forecast = assemble(self.model, self.state.vector(), Context.of(self.state))
            self.forecast = forecast
        return self.forecast

    def p_grok_within(self, budget: int) -> float | None:
        """P(t_grok <= ``budget``) at the newest evaluation, as if the run's budget were
        ``budget`` (the two budget features recomputed, as budget augmentation does in
        training); ``None`` without a budget or an evaluation. The run policy asks it to
        judge an extension."""
        state, last = self.state, self.state.last_step
        if last is None or state.budget is None:
            return None
        if state.tracker.t_grok is not None:
            return 1.0 if state.tracker.t_grok <= budget else 0.0
        t = max(last, 1)
        if budget <= t:
            return 0.0
        x = state.vector()
        b, m = _BUDGET_FEATURES
        new = math.log(budget / t)
        if not math.isfinite(x[b]):
            return None
        x[m] = x[m] + (x[b] - new)
        x[b] = new
        return float(self.model.predict_row(x, t).p_budget)


class _NoForecasts:
    columns: tuple[str, ...] = ()
    change_points: tuple[ChangePoint, ...] = ()
    new_change_points: tuple[ChangePoint, ...] = ()

    def update_rows(
        self, steps: Sequence[int], rows: np.ndarray, absent: np.ndarray
    ) -> Forecast | None:
        return None

    def p_grok_within(self, budget: int) -> float | None:
        return None


class NullForecaster:
    """Forecasts nothing: the detector stays rule-based (``Reason.NO_FORECASTER``)."""

    def start(
        self,
        *,
        budget: int | None,
        rules: EventRules | None = None,
        tracker: EventTracker | None = None,
    ) -> RunForecaster:
        return _NoForecasts()


class _Constant:
    columns: tuple[str, ...] = ()
    change_points: tuple[ChangePoint, ...] = ()
    new_change_points: tuple[ChangePoint, ...] = ()

    def __init__(self, p: float, horizon: int, budget: int | None) -> None:
        self.p, self.horizon, self.budget = p, horizon, budget

    def update_rows(
        self, steps: Sequence[int], rows: np.ndarray, absent: np.ndarray
    ) -> Forecast | None:
        if not len(steps):
            return None
        step = steps[-1]
        p = self.p if self.budget is None or step <= self.budget else 0.0
        return Forecast(
            step=step,
            p_grok_horizon=p,
            horizon=self.horizon,
            p_grok_budget=p,
            confidence=1.0,
            reason=ForecastReason.OK,
            alert=p >= 0.5,
            hopeless=p <= 0.05,
            message=f"constant forecast P={p:.2f}",
        )

    def p_grok_within(self, budget: int) -> float | None:
        """The same constant for any budget (what the run policy asks to judge an extension)."""
        return self.p


class ConstantForecaster:
    """Always forecasts P(grok) = ``p`` (alert at >= 0.5, hopeless at <= 0.05): a test double."""

    def __init__(self, p: float = 0.5, *, horizon: int = 1000) -> None:
        if not 0.0 <= p <= 1.0 or math.isnan(p):
            raise ValueError(f"p must be in [0, 1], got {p=!r}")
        self.p = p
        self.horizon = horizon

    def start(
        self,
        *,
        budget: int | None,
        rules: EventRules | None = None,
        tracker: EventTracker | None = None,
    ) -> RunForecaster:
        return _Constant(self.p, self.horizon, budget)
