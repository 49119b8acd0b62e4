"""The service's own Prometheus metrics, all in one injected ``CollectorRegistry``.

Per-run series come from :class:`grokwatch.metrics.RunCollector` over the run table (only live
runs, so finished runs leave the exposition after the TTL) plus :class:`RunCountersCollector`
for the service-side counters of each run. The service's own counters, the rejected-request
counter and the request-latency histogram sit beside them. Nothing is written to the
process-global ``prometheus_client.REGISTRY``.

=============================================  =========  =====================================
metric                                         type       meaning
=============================================  =========  =====================================
grokwatch_run_phase_changes_total              counter    phase changes the detector saw
grokwatch_run_alerts_total                     counter    alerts raised: will_grok / hopeless
                                                          forecasts, stop / extend advice
grokwatch_run_points                           gauge      evaluation points stored for the run
grokwatch_run_refused_values_total             counter    values refused: the run already had
                                                          the most distinct measure names
grokwatch_service_ingest_requests_total        counter    accepted point batches
grokwatch_service_ingested_points_total        counter    points stored
grokwatch_service_duplicate_points_total       counter    points ignored as already stored
grokwatch_service_registered_runs_total        counter    runs registered (new ids)
grokwatch_service_finished_runs_total          counter    finish requests accepted
grokwatch_service_unloaded_runs_total          counter    runs that left memory (TTL)
grokwatch_service_rejected_requests_total      counter    refused requests, ``reason`` label
grokwatch_service_request_duration_seconds     histogram  request latency, ``handler`` label
grokwatch_service_live_runs                    gauge      runs in memory, ``state`` label
grokwatch_service_ready                        gauge      1 once the run table is loaded
grokwatch_service_forecast_backlog_runs        gauge      runs whose forecast still waits
                                                          (answers come before forecasts)
grokwatch_service_forecast_failures_total      counter    forecasts that raised
grokwatch_service_forecast_lag_seconds         histogram  how long a forecast lagged the first
                                                          report it had not seen
grokwatch_service_refused_values_total         counter    values refused service-wide because
                                                          their run had the most distinct
                                                          measure names
=============================================  =========  =====================================

Counters are plain integers bumped on the event loop and read at scrape time (no locks on the
hot path); the two histograms are ``prometheus_client`` histograms in the same registry.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Receive, Scope, Send

from grokwatch.metrics import DEFAULT_INFO_LABELS, RunCollector, RunView
from grokwatch.service.live import LiveRun
from grokwatch.service.state import RunTable

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RunCountersCollector(Collector):
    """Per-run counters that only the service knows (phase changes, alerts, stored points)."""

    def __init__(self, source: Callable[[], Iterable[LiveRun]]) -> None:
        self._source = source

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        changes = CounterMetricFamily(
            "grokwatch_run_phase_changes",
            "Phase changes the detector saw in the run (rule-based change points).",
            labels=["run_id"],
        )
        alerts = CounterMetricFamily(
            "grokwatch_run_alerts",
            "Alerts raised for the run: a will_grok or hopeless forecast, or stop/extend advice "
            "(counted each time the advice changes to one of them).",
            labels=["run_id"],
        )
        points = GaugeMetricFamily(
            "grokwatch_run_points", "Evaluation points stored for the run.", labels=["run_id"]
        )
        refused = CounterMetricFamily(
            "grokwatch_run_refused_values",
            "Values refused because the run already had the most distinct measure names "
            "(GROKWATCH_MAX_MEASURES_PER_RUN).",
            labels=["run_id"],
        )
        for run in self._source():
            rid = [run.run_id]
            changes.add_metric(rid, run.phase_changes)
            alerts.add_metric(rid, run.alerts)
            points.add_metric(rid, run.n_points)
            refused.add_metric(rid, run.refused_values)
        yield changes
        yield alerts
        yield points
        yield refused


COUNTERS = {
    "ingest_requests": "Point batches the service accepted.",
    "ingested_points": "Evaluation points the service stored.",
    "duplicate_points": "Evaluation points ignored because their (run, step) was already stored.",
    "registered_runs": "Runs registered under a new id.",
    "finished_runs": "Finish requests the service accepted.",
    "unloaded_runs": "Runs that left memory and the exposition after their TTL.",
}


class ServiceMetrics(Collector):
    """Every service metric, registered in ``registry`` (see the module table).

    Counters are plain ints bumped on the event loop; the collector reads them at scrape time.
    """

    def __init__(
        self, registry: CollectorRegistry, *, info_labels: Sequence[str] = DEFAULT_INFO_LABELS
    ) -> None:
        self.registry = registry
        self.table: RunTable | None = None
        self.counts: collections.Counter[str] = collections.Counter()
        self.rejected: collections.Counter[str] = collections.Counter()
        self.latency = Histogram(
            "grokwatch_service_request_duration_seconds",
            "Time from receiving a request to sending its last byte, by route.",
            ["handler"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.lags = Histogram(
            "grokwatch_service_forecast_lag_seconds",
            "Seconds from the first report a forecast had not seen to the forecast that took "
            "it in (answers come first, forecasts right after).",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        registry.register(RunCollector(self._views, info_labels=info_labels))
        registry.register(RunCountersCollector(self._runs))
        registry.register(self)

    def _views(self) -> list[RunView]:
        return [] if self.table is None else self.table.views()

    def _runs(self) -> list[LiveRun]:
        return [] if self.table is None else self.table.current()

    def forecast_lag(self, seconds: float) -> None:
        self.lags.observe(seconds)

    def inc(self, name: str, amount: int = 1) -> None:
        self.counts[name] += amount

    def reject(self, reason: str) -> None:
        self.rejected[reason] += 1

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        for name, doc in COUNTERS.items():
            yield CounterMetricFamily(f"grokwatch_service_{name}", doc, value=self.counts[name])
        rejected = CounterMetricFamily(
            "grokwatch_service_rejected_requests",
            "Requests the service refused, by reason code (the error field of the response).",
            labels=["reason"],
        )
        for reason, count in sorted(self.rejected.items()):
            rejected.add_metric([reason], count)
        yield rejected
        table = self.table
        live = GaugeMetricFamily(
            "grokwatch_service_live_runs",
            "Runs held in memory by the service, by state.",
            labels=["state"],
        )
        runs = table.live() if table is not None else []
        unfinished = sum(1 for r in runs if r.finished_at is None)
        live.add_metric(["running"], unfinished)
        live.add_metric(["finished"], len(runs) - unfinished)
        yield live
        yield GaugeMetricFamily(
            "grokwatch_service_ready",
            "1 once the service has loaded its run table, else 0.",
            value=float(table is not None and table.loaded),
        )
        yield GaugeMetricFamily(
            "grokwatch_service_forecast_backlog_runs",
            "Runs answered before their forecast whose forecast still waits.",
            value=len(table.backlog) if table is not None else 0,
        )
        yield CounterMetricFamily(
            "grokwatch_service_refused_values",
            "Values refused because their run already had the most distinct measure names "
            "(GROKWATCH_MAX_MEASURES_PER_RUN).",
            value=table.refused_values if table is not None else 0,
        )
        yield CounterMetricFamily(
            "grokwatch_service_forecast_failures",
            "Forecasts that raised (logged; the run's forecast waits for its next report).",
            value=table.backlog.failures if table is not None else 0,
        )


class LatencyMiddleware:
    """Pure ASGI middleware observing every HTTP request's duration by route template."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            route = scope.get("route")
            handler = getattr(route, "path", None) or "unmatched"
            self.histogram.labels(handler).observe(time.perf_counter() - started)
