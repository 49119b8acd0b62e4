"""The forecasts the answers left behind: runs whose detector holds points its forecaster has
not read yet, the longest-waiting first.

The service answers a batch before its forecast (see :mod:`grokwatch.service.app`); each run
that then waits is queued here until :meth:`ForecastBacklog.flush_oldest` (the service's
background task) or a read of the run (:meth:`ForecastBacklog.flush`) brings it up to date.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from grokwatch.service.live import LiveRun

log = logging.getLogger("grokwatch.service")


class ForecastBacklog:
    """Runs whose forecast waits, oldest first.

    ``on_forecast`` is called with the lag (seconds since the first report the forecast had
    not seen) of every forecast brought up to date; ``on_stale`` (from whichever thread judged
    the batch) whenever a run starts to wait.
    """

    def __init__(self, *, on_forecast: Callable[[float], None] | None = None) -> None:
        self.on_forecast = on_forecast
        self.on_stale: Callable[[], object] | None = None
        self.on_decided: Callable[[LiveRun], object] | None = None
        """Called with each run whose decision a flush brought up to date (the run table
        stores new run-policy actions)."""
        self.failures = 0
        """Forecasts that raised (the run waits for its next report)."""
        self._waiting: dict[str, tuple[LiveRun, float]] = {}  # since when, monotonic

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, run: LiveRun) -> None:
        """Queue a run whose detector holds points its forecaster has not read."""
        if run.run_id not in self._waiting:
            self._waiting[run.run_id] = (run, time.monotonic())
            if self.on_stale is not None:
                self.on_stale()

    def drop(self, run_id: str) -> None:
        """Forget a run that left memory (a reload replays its forecaster anyway)."""
        self._waiting.pop(run_id, None)

    def caught_up(self, run_id: str) -> None:
        """The run's forecast was brought up to date elsewhere (a replay)."""
        waiting = self._waiting.pop(run_id, None)
        if waiting is not None:
            self._lagged(waiting[1])

    def flush(self, run: LiveRun) -> None:
        """The run's forecast, brought up to date (nothing when it does not wait)."""
        waiting = self._waiting.pop(run.run_id, None)  # first: a failing forecast is not retried
        if waiting is None:
            return
        previous = run.detector.decision
        decision = run.detector.flush()
        if decision is not None:
            run.count_alert(previous, decision)
            run.unsent += decision.change_points
            if self.on_decided is not None:
                self.on_decided(run)
        self._lagged(waiting[1])

    def flush_oldest(self, runs: int | None = None) -> int:
        """Bring the forecasts that wait up to date, the longest-waiting run first: all of
        them, or the first ``runs``; returns how many runs still wait."""
        left = math.inf if runs is None else runs
        while self._waiting and left > 0:
            left -= 1
            run = next(iter(self._waiting.values()))[0]
            try:
                self.flush(run)
            except Exception:  # the run is out of the backlog: its next report retries
                self.failures += 1
                if self.failures == 1 or self.failures % 100 == 0:
                    log.exception(
                        "forecast of run %r failed (%d so far)", run.run_id, self.failures
                    )
        return len(self._waiting)

    @property
    def next_points(self) -> int:
        """Points the forecast that waits longest will read (0 when none waits)."""
        if not self._waiting:
            return 0
        return next(iter(self._waiting.values()))[0].detector.pending_points

    def _lagged(self, since: float) -> None:
        if self.on_forecast is not None:
            self.on_forecast(time.monotonic() - since)
