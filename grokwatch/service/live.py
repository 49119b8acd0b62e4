"""What the service keeps of one live run, and how a run's detector is built.

:class:`LiveRun` holds a run's registration, its :class:`~grokwatch.detector.RunDetector` and
the exporter's counters; :func:`detector_for` builds the detector from a stored registration
and :class:`TableLimits` says how long a run stays in memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from grokwatch.decision import Action, ChangePoint, Decision, Phase, Reason
from grokwatch.detector import DEFAULT, RunDetector, resolve_forecaster
from grokwatch.events import EventRules
from grokwatch.exceptions import ConfigError
from grokwatch.metrics import RunView, change_point_counts, control_view
from grokwatch.policy import RunPolicy
from grokwatch.wire import MAX_COUNT, RunCreate

Clock = Callable[[], float]
DetectorFactory = Callable[[Mapping[str, Any]], RunDetector]
"""Builds a run's detector from its stored registration (inject one to add a forecaster)."""


@dataclasses.dataclass(frozen=True)
class TableLimits:
    """The run-table part of the settings: the cap on live runs and how long runs stay."""

    max_live_runs: int = 10_000
    finished_ttl: float = 300.0
    idle_ttl: float = 86_400.0
    max_measures_per_run: int = 1024
    """Distinct measure names a run may have; values of further names are refused (counted)."""

    def expired(self, finished_at: float | None, updated_at: float, now: float) -> bool:
        """Past its TTL: ``finished_ttl`` after it finished, ``idle_ttl`` without a report."""
        if finished_at is not None:
            return now - finished_at > self.finished_ttl
        return now - updated_at > self.idle_ttl


@dataclasses.dataclass(eq=False)
class LiveRun:
    """One run held in memory: its registration, detector and the exporter's counters."""

    run_id: str
    created_at: float
    updated_at: float
    finished_at: float | None
    meta: Mapping[str, Any]
    summary: Mapping[str, Any]
    detector: RunDetector
    n_points: int = 0
    last_step: int | None = None
    last_values: Mapping[str, float] = dataclasses.field(default_factory=dict)
    last_report: float | None = None
    alerts: int = 0
    dropped: int = 0
    agent_errors: int = 0
    unsent: tuple[ChangePoint, ...] = ()
    """Change points a forecast confirmed after the answer: the next answer has them."""
    measures: set[str] = dataclasses.field(default_factory=set)
    """Distinct measure names stored for the run (at most
    ``TableLimits.max_measures_per_run``)."""
    refused_values: int = 0
    """Values refused because the run already had ``max_measures_per_run`` measure names."""
    actions_stored: int = 0
    """Run-policy actions already written to the stored summary."""

    def count_alert(self, previous: Decision | None, decision: Decision) -> None:
        """Count an alert when the advice turns to one (see :func:`alerting`)."""
        if alerting(decision) and (
            previous is None
            or previous.action is not decision.action
            or previous.reason is not decision.reason
        ):
            self.alerts += 1

    @property
    def decision(self) -> Decision | None:
        return self.detector.decision

    @property
    def phase_changes(self) -> int:
        return self.detector.phase_changes

    @property
    def phase(self) -> Phase | None:
        return None if self.last_step is None else self.detector.phase

    def view(self) -> RunView:
        decision = self.detector.decision
        tracker = self.detector.tracker
        return RunView(
            run_id=self.run_id,
            step=self.last_step,
            values=self.last_values,
            phase=self.phase,
            events={"t_mem": tracker.t_mem, "t_grok": tracker.t_grok},
            last_report=self.last_report,
            forecast=None if decision is None else decision.forecast,
            agent_errors=self.agent_errors,
            dropped=self.dropped,
            change_points=change_point_counts(self.detector.change_points),
            labels=_str_labels(self.meta.get("labels")),
            finished_at=self.finished_at,
            **control_view(self.detector, None if decision is None else decision.action),
        )


@dataclasses.dataclass(frozen=True)
class Ingested:
    """What one batch did, and the run's step, phase and decision right after it."""

    run: LiveRun
    accepted: int
    duplicates: int
    last_step: int | None = None
    phase: Phase | None = None
    decision: Decision | None = None


def stored_meta(request: RunCreate) -> dict[str, Any]:
    """What the store's ``meta`` column keeps of a registration."""
    return request.model_dump(exclude={"run_id"})


def detector_for(meta: Mapping[str, Any], *, forecaster: Any = DEFAULT) -> RunDetector:
    """A detector configured from a registration: its budget, the agent's event rules and
    its run policy (opt-in: ``meta.policy``, see :class:`~grokwatch.policy.RunPolicy`).

    ``forecaster`` is passed to :class:`~grokwatch.detector.RunDetector` (``"default"``: the
    model shipped with grokwatch, ``None``: rule-based only, or a resolved forecaster).
    """
    budget = meta.get("budget")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        budget = None
    extra = meta.get("meta")
    raw_rules = extra.get("rules") if isinstance(extra, Mapping) else meta.get("rules")
    rules = None
    if isinstance(raw_rules, Mapping):
        try:
            rules = EventRules(**raw_rules)
        except TypeError as exc:
            raise ConfigError(f"meta.rules are not event rules: {exc}") from exc
    raw_policy = extra.get("policy") if isinstance(extra, Mapping) else meta.get("policy")
    policy = None if raw_policy is None else RunPolicy.from_json(raw_policy)
    return RunDetector(rules, budget=budget, forecaster=forecaster, policy=policy)


def load_forecaster(name: str) -> Any:
    """The forecaster named by the ``forecaster`` setting, loaded once: ``"none"`` (rule-based
    phases only), ``"default"`` (the model shipped with grokwatch) or a model file."""
    if name.lower() == "none":
        return None
    try:
        return resolve_forecaster(name)
    except Exception as exc:
        raise ConfigError(f"cannot load the forecaster {name!r}: {exc}") from exc


ALERT_REASONS = frozenset({Reason.WILL_GROK, Reason.HOPELESS})


def alerting(decision: Decision) -> bool:
    """Advice worth an alert: stop or extend, or a confident forecast either way."""
    return decision.action is not Action.CONTINUE or decision.reason in ALERT_REASONS


DROPPED_KEY = "transport_dropped"
"""Summary key of the records a run's transport dropped (the agent's summary uses it too)."""


def stored_count(summary: Mapping[str, Any], key: str) -> int:
    """A counter kept in a run's summary: a whole number from 0 to 2**53 - 1, else 0."""
    value = summary.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT:
        return value
    return 0


def _str_labels(raw: Any) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): v for k, v in raw.items() if isinstance(v, str)}
