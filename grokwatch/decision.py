"""Typed results that flow from the detector back to the training loop.

A :class:`Decision` is never a bare bool: it carries an :class:`Action`, an enum
:class:`Reason`, a readable message, the current :class:`Phase` and, once a forecaster exists,
a :class:`Forecast`.
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
    """Rule-based phases only: grokwatch does not advise stopping without a forecast."""
    NOT_MEASURED = "not_measured"
    """No measurement yet (before the first evaluation)."""
    AGENT_ERROR = "agent_error"
    """The agent failed internally; training goes on untouched."""
    DETECTOR_UNAVAILABLE = "detector_unavailable"
    """A remote detector has not answered yet."""
    WILL_GROK = "will_grok"
    HOPELESS = "hopeless"
    FINISHED = "finished"


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
