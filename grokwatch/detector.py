"""Judging one run from its evaluation points: events, phase, forecast and the decision.

:class:`RunDetector` is the single place where a run's measures become a :class:`Decision`.
The in-process agent and the HTTP service both use it, so a run is judged the same way
wherever its detector lives.

With a forecaster (by default the fitted :class:`~grokwatch.forecast.GrokForecaster` shipped
in the package) every update also carries a :class:`~grokwatch.Forecast` and the change
points confirmed at that update, and the decision's reason reads the forecast:

==========================  ===============================================================
reason                      when
==========================  ===============================================================
``NO_FORECASTER``           no forecaster, or its confidence is below ``min_confidence``
                            (first evaluations, key measures missing); the forecast is
                            still attached
``FINISHED``                the run generalized (``t_grok`` seen)
``WILL_GROK``               the forecast alerts (P(grok within budget) >= its threshold)
``HOPELESS``                the forecast is at or below its hopeless threshold
``UNDECIDED``               anything in between
==========================  ===============================================================

The action stays ``CONTINUE``: the detector reports, it does not (yet) advise stopping or
extending; the forecast's false-alarm rate is in ``grokwatch/forecast/FORECAST.md``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from grokwatch.decision import (
    Action,
    ChangePoint,
    Decision,
    Forecast,
    ForecastReason,
    Phase,
    Reason,
)
from grokwatch.events import EventRules, Events, EventTracker, Outcome
from grokwatch.forecast.online import MIN_CONFIDENCE, Forecaster, RunForecaster

DEFAULT = "default"
"""``forecaster=DEFAULT`` picks the fitted model shipped with grokwatch."""


def resolve_forecaster(forecaster: Forecaster | str | Path | None) -> Forecaster | None:
    """``None`` (rule-based), ``"default"`` (the shipped model), a model file path, or any
    object with a ``start(budget=, rules=)`` method."""
    if forecaster is None:
        return None
    if isinstance(forecaster, str | Path):
        from grokwatch.forecast.io import load, load_default

        if str(forecaster) == DEFAULT:
            return load_default()
        return load(forecaster)
    return forecaster


class RunDetector:
    """Detector for one run: rule-based events and phases plus, with a forecaster, forecasts.

    ``observe`` accepts points in any order; a step seen before is ignored (idempotent), a step
    older than the newest rebuilds the event tracker (and the forecaster's run state) from the
    sorted history. ``forecaster``: see :func:`resolve_forecaster`; ``min_confidence``: the
    confidence below which the forecast is attached but not acted on.
    """

    def __init__(
        self,
        rules: EventRules | None = None,
        *,
        budget: int | None = None,
        forecaster: Forecaster | str | Path | None = DEFAULT,
        min_confidence: float = MIN_CONFIDENCE,
    ) -> None:
        self.rules = rules or EventRules()
        self.budget = budget
        self.forecaster = resolve_forecaster(forecaster)
        self.min_confidence = min_confidence
        self._steps: list[int] = []
        self._values: dict[int, Mapping[str, float]] = {}
        self._tracker = EventTracker(self.rules)
        self._run: RunForecaster | None = self._start()
        self.forecast: Forecast | None = None
        self.decision: Decision | None = None

    def _start(self) -> RunForecaster | None:
        if self.forecaster is None:
            return None
        return self.forecaster.start(budget=self.budget, rules=self.rules)

    def observe(self, step: int, values: Mapping[str, float]) -> Decision:
        new: Sequence[ChangePoint] = ()
        if step not in self._values:
            self._values[step] = dict(values)
            if self._steps and step < self._steps[-1]:
                bisect.insort(self._steps, step)
                self._tracker = EventTracker(self.rules)
                self._run = self._start()
                for s in self._steps:
                    self._feed(s)
            else:
                self._steps.append(step)
                self._feed(step)
            new = tuple(self._run.new_change_points) if self._run is not None else ()
        self.decision = self._decide(tuple(new))
        return self.decision

    def _feed(self, step: int) -> None:
        v = self._values[step]
        self._tracker.update(
            step,
            train_acc=v.get("train_accuracy"),
            test_acc=v.get("test_accuracy"),
            train_loss=v.get("train_loss_step", v.get("train_loss")),
        )
        if self._run is not None:
            self.forecast = self._run.update(step, v)

    def _decide(self, new: tuple[ChangePoint, ...]) -> Decision:
        phase = self._tracker.phase
        last = self._steps[-1]
        f = self.forecast if self._run is not None else None
        if f is None:
            return Decision.keep_going(
                last,
                Reason.NO_FORECASTER,
                f"phase {phase.value} at step {last}; no forecaster configured, continuing",
                phase,
            )
        head = f"phase {phase.value} at step {last}; "
        if phase is Phase.GENERALIZED or f.reason == ForecastReason.GENERALIZED:
            reason, text = Reason.FINISHED, "generalized, nothing left to forecast"
        elif not f.confidence >= self.min_confidence:
            reason = Reason.NO_FORECASTER
            text = f"forecast too unsure to act on (confidence {f.confidence:.2f}): {f.message}"
        elif f.alert:
            reason, text = Reason.WILL_GROK, f"will grok: {f.message}"
        elif f.hopeless:
            reason, text = Reason.HOPELESS, f"unlikely to grok within budget: {f.message}"
        else:
            reason, text = Reason.UNDECIDED, f"undecided: {f.message}"
        return Decision(
            step=last,
            action=Action.CONTINUE,
            reason=reason,
            message=head + text + "; continuing",
            phase=phase,
            forecast=f,
            change_points=new,
        )

    @property
    def change_points(self) -> Sequence[ChangePoint]:
        """Every change point the forecaster confirmed so far (empty without one)."""
        return () if self._run is None else self._run.change_points

    @property
    def phase(self) -> Phase:
        return self._tracker.phase

    @property
    def events(self) -> Events:
        return self._tracker.events

    @property
    def tracker(self) -> EventTracker:
        return self._tracker

    def outcome(self) -> Outcome:
        return self._tracker.outcome(self.budget)

    def summary(self) -> dict[str, Any]:
        """JSON-ready events, phase and outcome (the run table's ``summary`` column)."""
        ev = self.events
        return {
            "t_mem": ev.t_mem,
            "t_grok": ev.t_grok,
            "gap": ev.gap,
            "sharpness": None
            if ev.sharpness is None or not math.isfinite(ev.sharpness)
            else ev.sharpness,
            "last_step": ev.last_step,
            "phase": self.phase.value,
            "outcome": self.outcome().value,
            "budget": self.budget,
        }
