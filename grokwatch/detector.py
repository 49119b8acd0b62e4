"""Judging one run from its evaluation points: events, phase and the decision.

:class:`RunDetector` is the single place where a run's measures become a :class:`Decision`.
The in-process agent and the HTTP service both use it, so a run is judged the same way
wherever its detector lives.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from typing import Any

from grokwatch.decision import Decision, Phase, Reason
from grokwatch.events import EventRules, Events, EventTracker, Outcome


class RunDetector:
    """Rule-based detector for one run (the forecaster plugs in here later).

    ``observe`` accepts points in any order; a step seen before is ignored (idempotent), a step
    older than the newest rebuilds the event tracker from the sorted history.
    """

    def __init__(self, rules: EventRules | None = None, *, budget: int | None = None) -> None:
        self.rules = rules or EventRules()
        self.budget = budget
        self._steps: list[int] = []
        self._values: dict[int, Mapping[str, float]] = {}
        self._tracker = EventTracker(self.rules)
        self.decision: Decision | None = None

    def observe(self, step: int, values: Mapping[str, float]) -> Decision:
        if step not in self._values:
            self._values[step] = dict(values)
            if self._steps and step < self._steps[-1]:
                bisect.insort(self._steps, step)
                self._tracker = EventTracker(self.rules)
                for s in self._steps:
                    self._feed(s)
            else:
                self._steps.append(step)
                self._feed(step)
        phase = self._tracker.phase
        last = self._steps[-1]
        self.decision = Decision.keep_going(
            last,
            Reason.NO_FORECASTER,
            f"phase {phase.value} at step {last}; no forecaster configured, continuing",
            phase,
        )
        return self.decision

    def _feed(self, step: int) -> None:
        v = self._values[step]
        self._tracker.update(
            step,
            train_acc=v.get("train_accuracy"),
            test_acc=v.get("test_accuracy"),
            train_loss=v.get("train_loss_step", v.get("train_loss")),
        )

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
