"""Typed results that flow from the detector back to the training loop.

A :class:`Decision` is never a bare bool: it carries an :class:`Action`, an enum
:class:`Reason`, a readable message, the current :class:`Phase` and, once a forecaster exists,
a :class:`Forecast` (with its :class:`ForecastReason`) and the :class:`ChangePoint` events
confirmed at that update.
"""

from __future__ import annotations

import dataclasses
import enum


class Phase(enum.StrEnum):
    """Where a run stands, by the transparent rules of :mod:`grokwatch.events`."""

    MEMORIZING = "memorizing"
    """Train accuracy still rising towards the memorization threshold."""
    PLATEAU = "plateau"
    """Train set memorized, test accuracy flat near its post-memorization low."""
    GROKKING = "grokking"
    """Memorized, and test accuracy has risen clearly above its plateau but not yet to t_grok."""
    GENERALIZED = "generalized"
    """Test accuracy at or above the grokking threshold."""
    CONFUSED = "confused"
    """Train accuracy stalled below the memorization threshold."""
    DIVERGED = "diverged"
    """The training loss is NaN or infinite."""


class Action(enum.StrEnum):
    CONTINUE = "continue"
    STOP = "stop"
    EXTEND = "extend"


class Reason(enum.StrEnum):
    NO_FORECASTER = "no_forecaster"
    """Rule-based phases only: grokwatch does not advise stopping without a forecast. Also
    given while the forecast is too unsure to act on (confidence below
    ``RunDetector.min_confidence``, e.g. during the first evaluations); the decision then
    carries that forecast and its own reason."""
    NOT_MEASURED = "not_measured"
    """No measurement yet (before the first evaluation)."""
    AGENT_ERROR = "agent_error"
    """The agent failed internally; training goes on untouched."""
    DETECTOR_UNAVAILABLE = "detector_unavailable"
    """A remote detector has not answered yet."""
    WILL_GROK = "will_grok"
    """The forecast alerts: P(grok within budget) is at or above the forecaster's alert
    threshold (chosen on validation runs for a false-alarm rate <= 5 %)."""
    HOPELESS = "hopeless"
    """The forecast is confident the run will not grok within its budget (with a run policy:
    ``STOP`` once it stayed so for the policy's patience)."""
    FINISHED = "finished"
    """The run has generalized (``t_grok`` seen): nothing is left to forecast (with a run
    policy: ``STOP`` after its ``finish_patience``)."""
    UNDECIDED = "undecided"
    """The forecaster judged the run and sees neither an alert nor hopelessness yet."""
    GROKS_AFTER_BUDGET = "groks_after_budget"
    """Run policy (opt-in): the run will probably grok soon after its budget; the decision
    says ``EXTEND`` with ``extend_steps`` (see :mod:`grokwatch.policy`), then ``CONTINUE``
    with this reason while the run is in the extension."""
    POLICY_ERROR = "policy_error"
    """The run policy failed internally; the decision is ``CONTINUE`` and training goes on."""


class ForecastReason(enum.StrEnum):
    """Why a forecast is as sure (or unsure) as it says; the most serious one is given."""

    OK = "ok"
    """Enough points, every key measure present, finite input."""
    TOO_FEW_POINTS = "too_few_points"
    """Fewer evaluations than the forecaster needs for trends; confidence scaled down."""
    MISSING_MEASURES = "missing_measures"
    """Some measures the model uses were never reported (e.g. no embedding); they are imputed
    with training medians and the confidence drops by their share of the model's weight."""
    NON_FINITE = "non_finite"
    """The latest evaluation had NaN/inf values; they were ignored."""
    BUDGET_UNKNOWN = "budget_unknown"
    """The run has no budget; the remaining-budget feature is imputed."""
    BUDGET_EXHAUSTED = "budget_exhausted"
    """The run is past its budget without grokking: P(grok within budget) is 0."""
    DIVERGED = "diverged"
    """The training loss is not finite."""
    GENERALIZED = "generalized"
    """``t_grok`` was seen: the probabilities are 1 and ``t_grok`` is the observed step."""


class Direction(enum.StrEnum):
    """How a measure's trend changed at a change point."""

    UP = "up"
    """The measure started rising faster (or falling slower)."""
    DOWN = "down"
    """The measure started falling faster (or rising slower)."""


class ChangePointMethod(enum.StrEnum):
    BAYES = "bayes"
    """Online Bayesian change-point detection (Adams & MacKay 2007)."""
    KERNEL = "kernel"
    """ruptures ``KernelCPD`` (linear kernel) on a bounded window."""


@dataclasses.dataclass(frozen=True)
class ChangePoint:
    """A bend in one measure's trend (see :mod:`grokwatch.forecast.changepoints`).

    ``step`` is the first step of the new regime, ``detected_at`` the step at which it was
    reported, ``strength`` the shift of the mean slope per log-step in pooled standard
    deviations, ``slope_before``/``slope_after`` the two regimes' mean slopes.
    """

    measure: str
    step: int
    direction: Direction
    strength: float
    method: ChangePointMethod
    detected_at: int
    slope_before: float
    slope_after: float

    def to_json(self) -> dict[str, object]:
        return {
            "measure": self.measure,
            "step": self.step,
            "direction": self.direction.value,
            "strength": self.strength,
            "method": self.method.value,
            "detected_at": self.detected_at,
            "slope_before": self.slope_before,
            "slope_after": self.slope_after,
        }


@dataclasses.dataclass(frozen=True)
class Forecast:
    """A forecaster's view of a run at one step.

    ``p_grok_horizon`` is P(t_grok within the next ``horizon`` steps), ``p_grok_budget`` is
    P(t_grok within the run's budget), ``t_grok`` the estimated grokking step with an interval.
    ``confidence`` in [0, 1] is lowered (with ``reason`` saying why) when input was missing.
    """

    step: int
    p_grok_horizon: float
    horizon: int
    p_grok_budget: float
    t_grok: float | None = None
    t_grok_low: float | None = None
    t_grok_high: float | None = None
    confidence: float = 1.0
    reason: str = ""
    phase: Phase | None = None
    """The run's phase by the rules of :mod:`grokwatch.events` when the forecast was made."""
    alert: bool = False
    """``p_grok_budget`` reached the forecaster's alert threshold with enough confidence."""
    hopeless: bool = False
    """``p_grok_budget`` fell to the forecaster's hopeless threshold with enough confidence."""
    message: str = ""
    missing: tuple[str, ...] = ()
    """Measures the forecaster uses that the run never reported."""


@dataclasses.dataclass(frozen=True)
class Decision:
    """The advice returned by every ``Agent.step`` call."""

    step: int
    action: Action
    reason: Reason
    message: str
    phase: Phase | None = None
    forecast: Forecast | None = None
    extend_steps: int = 0
    change_points: tuple[ChangePoint, ...] = ()
    """Change points the forecaster confirmed at this update (all of them: the detector's
    ``change_points``)."""

    @property
    def should_stop(self) -> bool:
        return self.action is Action.STOP

    @property
    def should_extend(self) -> bool:
        return self.action is Action.EXTEND

    @classmethod
    def keep_going(
        cls, step: int, reason: Reason, message: str, phase: Phase | None = None
    ) -> Decision:
        return cls(step=step, action=Action.CONTINUE, reason=reason, message=message, phase=phase)
