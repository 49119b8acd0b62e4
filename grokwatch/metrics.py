"""Prometheus export of live runs: a custom collector over run views, never a global registry.

Names follow the Prometheus naming conventions: ``grokwatch_`` prefix, base units,
0-1 ratios, ``_timestamp_seconds`` rather than "time since", ``_total`` on counters, and a
``run_id`` label only for live runs (the caller decides which runs it yields).

============================================  =====  ==========================================
metric                                        type   meaning
============================================  =====  ==========================================
grokwatch_run_step                            gauge  last evaluated training step
grokwatch_run_train_accuracy_ratio            gauge  train accuracy (0-1)
grokwatch_run_test_accuracy_ratio             gauge  test accuracy (0-1)
grokwatch_run_train_loss                      gauge  train loss (nats)
grokwatch_run_test_loss                       gauge  test loss (nats)
grokwatch_run_measure                         gauge  every scalar progress measure, ``measure``
                                                     label (per-layer values excluded)
grokwatch_run_phase                           gauge  1 for the current phase, 0 for the others
grokwatch_run_event_step                      gauge  step of ``t_mem`` / ``t_grok`` once seen
grokwatch_run_grokking_gap_steps              gauge  t_grok - t_mem once both are seen
grokwatch_run_grok_probability_ratio          gauge  forecast P(grok within budget)
grokwatch_run_predicted_grok_step             gauge  forecast t_grok
grokwatch_run_grok_horizon_probability_ratio  gauge  forecast P(grok within the next H steps),
                                                     ``horizon_steps`` label = H
grokwatch_run_forecast_confidence_ratio       gauge  confidence of the forecast (0-1)
grokwatch_run_grok_alert                      gauge  1 while the forecast alerts, else 0
grokwatch_run_measure_change_points_total     count  change points in a measure's trend,
                                                     ``measure`` and ``direction`` labels
grokwatch_run_last_report_timestamp_seconds   gauge  wall time of the last evaluation
grokwatch_run_agent_errors_total              count  internal agent errors (never raised)
grokwatch_run_dropped_records_total           count  records the transport had to drop
grokwatch_run_predicted_grok_low_step         gauge  low end of the forecast t_grok interval
grokwatch_run_predicted_grok_high_step        gauge  high end of the forecast t_grok interval
grokwatch_run_grok_hopeless                   gauge  1 while the forecast says the run will not
                                                     grok within budget, else 0
grokwatch_run_finished_timestamp_seconds      gauge  wall time the run finished (once it did)
grokwatch_run_info                            gauge  1, with the run's ``info_labels`` (by
                                                     default ``experiment`` and ``team``)
grokwatch_exposition_skipped_values_total     count  per-run values left out of the exposition
                                                     (not representable as a double)
grokwatch_run_actions_total                   count  stops and extensions the run policy
                                                     advised, ``action`` and ``reason`` labels
grokwatch_run_advised_action                  gauge  1 for the action the run policy advises
                                                     now (continue, stop, extend), 0 for the
                                                     others (runs with a policy only)
grokwatch_run_last_action_step                gauge  step of the policy's last stop/extend,
                                                     ``action`` and ``reason`` labels
============================================  =====  ==========================================

Robustness: the exposition never fails because of one run. A value that cannot be written as
a double (an integer beyond the double range, a non-number) is left out and counted in
``grokwatch_exposition_skipped_values_total``; the other series of that run and every other
run are exported as usual. NaN and infinities are valid exposition values and are exported.
"""

from __future__ import annotations

import dataclasses
import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from grokwatch.decision import Action, ChangePoint, Forecast, Phase

if TYPE_CHECKING:
    from grokwatch.detector import RunDetector

NAMED = {
    "train_accuracy": ("grokwatch_run_train_accuracy_ratio", "Train accuracy of the run (0-1)."),
    "test_accuracy": ("grokwatch_run_test_accuracy_ratio", "Test accuracy of the run (0-1)."),
    "train_loss": ("grokwatch_run_train_loss", "Train loss of the run (nats)."),
    "test_loss": ("grokwatch_run_test_loss", "Test loss of the run (nats)."),
}


@dataclasses.dataclass(frozen=True)
class RunView:
    """What the exporter shows of one live run."""

    run_id: str
    step: int | None
    values: Mapping[str, float]
    phase: Phase | None
    events: Mapping[str, int | None]
    last_report: float | None
    forecast: Forecast | None = None
    agent_errors: int = 0
    dropped: int = 0
    change_points: Mapping[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    """Change points so far by ``(measure, direction)`` (bounded: a few measures, 2 ways)."""
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """The run's registration labels; the collector exports its ``info_labels`` of them."""
    finished_at: float | None = None
    """Wall time the run finished, ``None`` while it runs."""
    advised: Action | None = None
    """The action the run policy advises now (``None``: the run has no policy)."""
    actions: Mapping[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    """Stops and extensions advised so far by ``(action, reason)``."""
    last_action: tuple[str, str, int] | None = None
    """``(action, reason, step)`` of the last stop or extension."""


DEFAULT_INFO_LABELS = ("experiment", "team")
"""Run labels exported on ``grokwatch_run_info`` by default (alert routing, dashboard filters)."""


def control_view(detector: RunDetector, advised: Action | None) -> dict[str, Any]:
    """The run-policy fields of a :class:`RunView` for a detector (empty without a policy)."""
    control = detector.control
    if control is None:
        return {}
    last = control.last_action
    return {
        "advised": advised or Action.CONTINUE,
        "actions": control.action_counts(),
        "last_action": None if last is None else (last.action.value, last.reason.value, last.step),
    }


def change_point_counts(points: Iterable[ChangePoint]) -> dict[tuple[str, str], int]:
    """Count change points by ``(measure, direction)`` for :attr:`RunView.change_points`."""
    counts: dict[tuple[str, str], int] = {}
    for cp in points:
        key = (cp.measure, cp.direction.value)
        counts[key] = counts.get(key, 0) + 1
    return counts


def agent_view(agent: Any) -> RunView:
    """The view of an in-process :class:`~grokwatch.Agent`."""
    step, values = agent.history[-1] if agent.history else (None, {})
    ev = agent.events
    return RunView(
        run_id=agent.run_id,
        step=step,
        values=values,
        phase=agent.phase if agent.history else None,
        events={"t_mem": ev.t_mem, "t_grok": ev.t_grok},
        last_report=agent.last_report_time,
        forecast=agent.decision.forecast,
        agent_errors=agent.errors,
        dropped=agent.transport.stats.dropped,
        change_points=change_point_counts(agent.detector.change_points),
        labels=_str_labels(agent.meta.get("labels")),
        finished_at=agent.finished_at,
        **control_view(agent.detector, agent.decision.action),
    )


def _str_labels(raw: Any) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): v for k, v in raw.items() if isinstance(v, str)}


def _double(value: Any) -> float | None:
    """``value`` as a double, ``None`` when it has none (huge ints, non-numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except (OverflowError, ValueError):
        return None


INFO_LABEL_RE = re.compile(r"(?!__)[A-Za-z_][A-Za-z0-9_]*")


class RunCollector(Collector):
    """Yields the per-run metric families for whatever runs ``source()`` returns now."""

    def __init__(
        self,
        source: Callable[[], Iterable[RunView]],
        *,
        info_labels: Sequence[str] = DEFAULT_INFO_LABELS,
    ) -> None:
        self._source = source
        self.info_labels = tuple(info_labels)
        for name in self.info_labels:
            if not INFO_LABEL_RE.fullmatch(name) or name == "run_id":
                raise ValueError(
                    f"info label {name!r} is not a Prometheus label name other than run_id "
                    "(letters, digits, _; not starting with a digit or __)"
                )
        self.skipped = 0
        """Values left out of the exposition so far (not representable as a double)."""

    def describe(self) -> list[Metric]:
        return []  # dynamic: registering must not call the source

    def _add(self, family: Metric, labels: list[str], value: Any) -> None:
        number = _double(value)
        if number is None:
            self.skipped += 1
            return
        family.add_metric(labels, number)  # type: ignore[attr-defined]

    def collect(self) -> Iterator[Metric]:
        runs = list(self._source())
        add = self._add
        g = {
            "step": GaugeMetricFamily(
                "grokwatch_run_step", "Last evaluated training step of the run.", labels=["run_id"]
            ),
            "measure": GaugeMetricFamily(
                "grokwatch_run_measure",
                "Scalar progress measure of the run (see docs/probes.md).",
                labels=["run_id", "measure"],
            ),
            "phase": GaugeMetricFamily(
                "grokwatch_run_phase",
                "1 for the run's current phase, 0 for the other phases.",
                labels=["run_id", "phase"],
            ),
            "event": GaugeMetricFamily(
                "grokwatch_run_event_step",
                "Training step at which a grokking event (t_mem, t_grok) was first seen.",
                labels=["run_id", "event"],
            ),
            "gap": GaugeMetricFamily(
                "grokwatch_run_grokking_gap_steps",
                "Grokking gap t_grok - t_mem in steps, once both events were seen.",
                labels=["run_id"],
            ),
            "prob": GaugeMetricFamily(
                "grokwatch_run_grok_probability_ratio",
                "Forecast probability that the run groks within its budget (0-1).",
                labels=["run_id"],
            ),
            "pred": GaugeMetricFamily(
                "grokwatch_run_predicted_grok_step",
                "Forecast training step at which the run groks.",
                labels=["run_id"],
            ),
            "seen": GaugeMetricFamily(
                "grokwatch_run_last_report_timestamp_seconds",
                "Unix time of the run's last evaluation.",
                labels=["run_id"],
            ),
        }
        named = {
            key: GaugeMetricFamily(name, doc, labels=["run_id"])
            for key, (name, doc) in NAMED.items()
        }
        horizon = GaugeMetricFamily(
            "grokwatch_run_grok_horizon_probability_ratio",
            "Forecast probability that the run groks within the next horizon_steps steps (0-1).",
            labels=["run_id", "horizon_steps"],
        )
        confidence = GaugeMetricFamily(
            "grokwatch_run_forecast_confidence_ratio",
            "Confidence of the run's forecast (0-1; lowered for missing or too few measures).",
            labels=["run_id"],
        )
        alert = GaugeMetricFamily(
            "grokwatch_run_grok_alert",
            "1 while the run's forecast alerts that it will grok within budget, else 0.",
            labels=["run_id"],
        )
        cps = CounterMetricFamily(
            "grokwatch_run_measure_change_points",
            "Change points detected in a measure's trend (online change-point detection).",
            labels=["run_id", "measure", "direction"],
        )
        errors = CounterMetricFamily(
            "grokwatch_run_agent_errors",
            "Internal agent errors of the run (never raised into training).",
            labels=["run_id"],
        )
        dropped = CounterMetricFamily(
            "grokwatch_run_dropped_records",
            "Records the run's transport dropped because its queue was full.",
            labels=["run_id"],
        )
        low = GaugeMetricFamily(
            "grokwatch_run_predicted_grok_low_step",
            "Low end of the forecast interval of the step at which the run groks.",
            labels=["run_id"],
        )
        high = GaugeMetricFamily(
            "grokwatch_run_predicted_grok_high_step",
            "High end of the forecast interval of the step at which the run groks.",
            labels=["run_id"],
        )
        hopeless = GaugeMetricFamily(
            "grokwatch_run_grok_hopeless",
            "1 while the run's forecast says it will not grok within budget, else 0.",
            labels=["run_id"],
        )
        finished = GaugeMetricFamily(
            "grokwatch_run_finished_timestamp_seconds",
            "Unix time the run finished (only once it did).",
            labels=["run_id"],
        )
        info = GaugeMetricFamily(
            "grokwatch_run_info",
            "Always 1; the run's registration labels used for routing and filtering "
            "(empty when the run has none).",
            labels=["run_id", *self.info_labels],
        )
        actions = CounterMetricFamily(
            "grokwatch_run_actions",
            "Stops and extensions the run policy advised (opt-in run control).",
            labels=["run_id", "action", "reason"],
        )
        advised = GaugeMetricFamily(
            "grokwatch_run_advised_action",
            "1 for the action the run policy advises now (continue, stop, extend), else 0.",
            labels=["run_id", "action"],
        )
        last_action = GaugeMetricFamily(
            "grokwatch_run_last_action_step",
            "Training step of the run policy's last stop or extension advice.",
            labels=["run_id", "action", "reason"],
        )
        for run in runs:
            rid = [run.run_id]
            info.add_metric([run.run_id, *(run.labels.get(k, "") for k in self.info_labels)], 1)
            if run.advised is not None:
                for action in Action:
                    advised.add_metric([run.run_id, action.value], float(action is run.advised))
            for (action_name, reason), n in run.actions.items():
                add(actions, [run.run_id, action_name, reason], n)
            if run.last_action is not None:
                name, why, at = run.last_action
                add(last_action, [run.run_id, name, why], at)
            if run.step is not None:
                add(g["step"], rid, run.step)
            for key, value in run.values.items():
                if key in named:
                    add(named[key], rid, value)
                elif "/" not in key:
                    add(g["measure"], [run.run_id, key], value)
            if run.phase is not None:
                for phase in Phase:
                    g["phase"].add_metric([run.run_id, phase.value], float(phase is run.phase))
            for event, step in run.events.items():
                if step is not None:
                    add(g["event"], [run.run_id, event], step)
            t_mem, t_grok = run.events.get("t_mem"), run.events.get("t_grok")
            if t_mem is not None and t_grok is not None:
                add(g["gap"], rid, t_grok - t_mem)
            f = run.forecast
            if f is not None:
                add(g["prob"], rid, f.p_grok_budget)
                bounds = ((g["pred"], f.t_grok), (low, f.t_grok_low), (high, f.t_grok_high))
                for family, bound in bounds:
                    if bound is not None and math.isfinite(bound):
                        add(family, rid, bound)
                if math.isfinite(f.p_grok_horizon):
                    add(horizon, [run.run_id, str(f.horizon)], f.p_grok_horizon)
                if math.isfinite(f.confidence):
                    add(confidence, rid, f.confidence)
                alert.add_metric(rid, float(f.alert))
                hopeless.add_metric(rid, float(f.hopeless))
            for (measure, direction), n in run.change_points.items():
                add(cps, [run.run_id, measure, direction], n)
            if run.last_report is not None:
                add(g["seen"], rid, run.last_report)
            if run.finished_at is not None:
                add(finished, rid, run.finished_at)
            add(errors, rid, run.agent_errors)
            add(dropped, rid, run.dropped)
        yield from named.values()
        yield from g.values()
        yield horizon
        yield confidence
        yield alert
        yield low
        yield high
        yield hopeless
        yield finished
        yield info
        yield cps
        yield errors
        yield dropped
        yield actions
        yield advised
        yield last_action
        skipped = CounterMetricFamily(
            "grokwatch_exposition_skipped_values",
            "Per-run values left out of the exposition because they are not representable "
            "as a double (the rest of the exposition is unaffected).",
        )
        skipped.add_metric([], self.skipped)
        yield skipped


def serve_agent_metrics(
    agents: Callable[[], Iterable[Any]], *, port: int, host: str = "127.0.0.1"
) -> Callable[[], None]:
    """Serve ``/metrics`` for in-process agents on ``host:port``; returns a stop function.

    The registry is private to this server (no process-global state is written).
    """
    from prometheus_client import start_http_server

    registry = CollectorRegistry(auto_describe=False)
    lock = threading.Lock()

    def views() -> list[RunView]:
        with lock:
            return [agent_view(a) for a in agents()]

    registry.register(RunCollector(views))
    server, thread = start_http_server(port, addr=host, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
