"""A run's decisions over time: events, change points and the forecast at every evaluation.

The run table keeps a run's measured points, not its decisions. :func:`replay` feeds the points
through a fresh :class:`~grokwatch.detector.RunDetector` one evaluation at a time, exactly as
the agent did while the run trained, so the decisions it returns are the agent's own (same
points, same rules, same budget, same forecaster, same run policy when it registered one, so the
same stop/extend advice). ``grokwatch show``, ``grokwatch runs`` and
the report read a stored run this way; the demo records its live decisions instead.

>>> from grokwatch.timeline import replay
>>> points = [(s, {"train_accuracy": min(1.0, s / 200), "test_accuracy": 0.02}) for s in
...           range(100, 1100, 100)]
>>> timeline = replay(points, budget=5000, forecaster=None)
>>> timeline.summary["t_mem"], timeline.summary["phase"]
(200, 'plateau')
>>> last = timeline.entries[-1]
>>> last["step"], last["phase"], last["reason"]
(1000, 'plateau', 'no_forecaster')
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from grokwatch.decision import ChangePoint, Decision, Forecast

FORECAST_FIELDS = (
    "p_grok_budget",
    "p_grok_horizon",
    "horizon",
    "t_grok",
    "t_grok_low",
    "t_grok_high",
    "confidence",
    "alert",
    "hopeless",
)
"""The fields of a :class:`~grokwatch.decision.Forecast` a timeline entry keeps."""


def entry(decision: Decision) -> dict[str, Any]:
    """One evaluation's decision as JSON-ready data (``None`` for an absent forecast field)."""
    out: dict[str, Any] = {
        "step": decision.step,
        "phase": None if decision.phase is None else decision.phase.value,
        "action": decision.action.value,
        "reason": decision.reason.value,
        "message": decision.message,
    }
    f: Forecast | None = decision.forecast
    for name in FORECAST_FIELDS:
        value = None if f is None else getattr(f, name)
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[name] = value
    if decision.extend_steps:
        out["extend_steps"] = decision.extend_steps
    return out


@dataclasses.dataclass(frozen=True)
class Timeline:
    """The decisions of one run, one entry per evaluation (see :func:`entry`)."""

    entries: list[dict[str, Any]]
    change_points: list[ChangePoint]
    summary: dict[str, Any]
    """Events, phase and outcome at the last evaluation (``RunDetector.summary``)."""
    alert_threshold: float | None = None
    """The forecaster's alert threshold on ``p_grok_budget`` (``None`` without one)."""

    def first_alert(self) -> dict[str, Any] | None:
        """The first entry whose forecast alerted, if any."""
        return next((e for e in self.entries if e.get("alert")), None)

    def actions(self) -> list[dict[str, Any]]:
        """The entries whose action was ``stop`` or ``extend``."""
        return [e for e in self.entries if e["action"] != "continue"]

    def to_json(self) -> dict[str, Any]:
        return {
            "alert_threshold": self.alert_threshold,
            "first_alert_step": None if self.first_alert() is None else self.first_alert_step,
            "forecasts": self.entries,
            "change_points": [c.to_json() for c in self.change_points],
        }

    @property
    def first_alert_step(self) -> int | None:
        first = self.first_alert()
        return None if first is None else int(first["step"])


def alert_threshold(forecaster: object) -> float | None:
    """The alert threshold of a fitted forecaster, when it has one."""
    from grokwatch.forecast.online import FittedModel

    return float(forecaster.alert_threshold_) if isinstance(forecaster, FittedModel) else None


def replay(
    points: Sequence[tuple[int, Mapping[str, float]]],
    *,
    budget: int | None = None,
    rules: Mapping[str, Any] | None = None,
    forecaster: Any = "default",
    policy: Mapping[str, Any] | None = None,
) -> Timeline:
    """Replay ``points`` (in step order) through a fresh detector, one evaluation at a time.

    ``rules`` are the run's ``EventRules`` and ``policy`` its ``RunPolicy`` as stored in its
    meta (``None``: no run control, every action ``continue``); ``forecaster`` is what
    :class:`~grokwatch.detector.RunDetector` accepts (``"default"``, ``None``, a path or a
    model). Raises ``ValueError`` for a run without points.
    """
    from grokwatch.detector import RunDetector
    from grokwatch.events import EventRules
    from grokwatch.policy import RunPolicy

    if not points:
        raise ValueError("the run has no evaluation points to replay")
    event_rules = EventRules(**rules) if rules else None
    run_policy = None if policy is None else RunPolicy.from_json(policy)
    detector = RunDetector(event_rules, budget=budget, forecaster=forecaster, policy=run_policy)
    entries = [entry(detector.observe(step, values)) for step, values in sorted(points)]
    return Timeline(
        entries=entries,
        change_points=list(detector.change_points),
        summary=detector.summary(),
        alert_threshold=alert_threshold(detector.forecaster),
    )


def replay_stored(
    run_meta: Mapping[str, Any],
    points: Sequence[tuple[int, Mapping[str, float]]],
    *,
    forecaster: Any = "default",
) -> Timeline:
    """:func:`replay` with the budget, event rules and run policy a run registered with."""
    budget = run_meta.get("budget")
    policy = run_meta.get("policy")
    return replay(
        points,
        budget=budget if isinstance(budget, int) else None,
        rules=run_meta.get("rules") or None,
        forecaster=forecaster,
        policy=policy if isinstance(policy, Mapping) else None,
    )


def fmt_step(value: Any) -> str:
    """A step for a terminal table: ``-`` when absent."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{float(value):.0f}"


def fmt_forecast(e: Mapping[str, Any]) -> str:
    """``P=0.96 t_grok~1586 [1060, 2561]`` (or ``-`` without a forecast)."""
    p = e.get("p_grok_budget")
    if p is None:
        return "-"
    text = f"P={p:.2f}"
    if e.get("t_grok") is not None:
        text += f" t_grok~{fmt_step(e['t_grok'])}"
        if e.get("t_grok_low") is not None and e.get("t_grok_high") is not None:
            text += f" [{fmt_step(e['t_grok_low'])}, {fmt_step(e['t_grok_high'])}]"
    return text


def describe(timeline: Timeline, *, every: bool = False) -> list[str]:
    """Terminal lines: the events, the first alert against ``t_grok``, the change points and
    the forecast timeline (only the evaluations where something changed unless ``every``)."""
    s = timeline.summary
    sharp = s.get("sharpness")
    lines = [
        f"events: t_mem={s.get('t_mem')} t_grok={s.get('t_grok')} gap={s.get('gap')} "
        f"sharpness={'-' if sharp is None else f'{sharp:.2f}'} phase={s.get('phase')} "
        f"outcome={s.get('outcome')} budget={s.get('budget')}",
        _alert_line(timeline),
        f"change points ({len(timeline.change_points)}):",
    ]
    if timeline.change_points:
        head = f"  {'step':>7}  {'measure':<18} {'direction':<9} {'strength':>8}  confirmed at"
        lines.append(head)
        lines += [
            f"  {c.step:>7}  {c.measure:<18} {c.direction.value:<9} {c.strength:>8.1f}  "
            f"{c.detected_at}"
            for c in timeline.change_points
        ]
    entries = timeline.entries
    rows = entries if every else _changes(entries)
    head = "forecast timeline"
    if timeline.alert_threshold is not None:
        head += f", alert at P(grok within budget) >= {timeline.alert_threshold:.3f}"
    if len(rows) < len(entries):
        head += f" ({len(rows)} of {len(entries)} evaluations: where something changed)"
    lines += [head + ":", f"  {'step':>7}  {'phase':<11} {'forecast':<32} alert  action    reason"]
    lines += [
        f"  {e['step']:>7}  {e['phase'] or '-':<11} {fmt_forecast(e):<32} "
        f"{'yes' if e.get('alert') else '':<5}  {e['action']:<9} {e['reason']}"
        for e in rows
    ]
    return lines


def _alert_line(timeline: Timeline) -> str:
    first = timeline.first_alert()
    t_grok = timeline.summary.get("t_grok")
    if first is None:
        return "first alert: none" + ("" if t_grok is None else f" (t_grok {t_grok})")
    text = f"first alert: step {first['step']}"
    if t_grok is not None:
        ahead = int(t_grok) - int(first["step"])
        text += f", {ahead} steps before t_grok ({t_grok})" if ahead >= 0 else " (after t_grok)"
    return text


def _changes(entries: Sequence[Mapping[str, Any]], keep: int = 24) -> list[Mapping[str, Any]]:
    """The first and last entries and those where the phase, reason, action or alert changed,
    topped up with evenly spaced ones to about ``keep`` rows."""
    if len(entries) <= keep:
        return list(entries)
    chosen = {0, len(entries) - 1}
    for i in range(1, len(entries)):
        a, b = entries[i - 1], entries[i]
        if any(a.get(k) != b.get(k) for k in ("phase", "reason", "action", "alert")):
            chosen.add(i)
    spare = keep - len(chosen)
    if spare > 0:
        stride = max(1, len(entries) // spare)
        chosen.update(range(0, len(entries), stride))
    return [entries[i] for i in sorted(chosen)]


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON (non-finite floats as ``null``) and return the path."""
    import json

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, Mapping):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    out = Path(path)
    out.write_text(json.dumps(clean(data), indent=2, default=str, allow_nan=False))
    return out
