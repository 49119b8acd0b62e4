"""The service's run table: one :class:`~grokwatch.detector.RunDetector` per live run.

:class:`RunTable` is the thin adapter between the wire and the detector: it writes every
accepted point to the :class:`~grokwatch.store.Store` first (the acknowledgement means the
point is committed), then feeds the same points to the run's detector -- the very class the
in-process agent uses -- so a run is judged identically wherever its detector lives.

A run is *live* (in memory, exported to Prometheus) from registration until it finishes plus
``finished_ttl`` seconds, or until no report arrived for ``idle_ttl`` seconds. A run that left
memory is rebuilt from the store on demand: its history, events, phase and decision (with the
forecast, once a forecaster is configured) come back by replaying the stored points, which is
also what happens to every live run after a restart (:meth:`RunTable.load`).

A run's detector is built by :func:`~grokwatch.service.live.detector_for` (or an injected
factory); the forecasts that answers leave behind wait in :attr:`RunTable.backlog`.

Threading: every mutating method is meant to run on one worker thread (the service serializes
them); :meth:`RunTable.views` and the counters may be read from any thread.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from grokwatch.exceptions import RunLimitError, UnknownRunError
from grokwatch.metrics import RunView
from grokwatch.service.backlog import ForecastBacklog
from grokwatch.service.live import (
    DROPPED_KEY,
    Clock,
    DetectorFactory,
    Ingested,
    LiveRun,
    TableLimits,
    detector_for,
    stored_count,
    stored_meta,
)
from grokwatch.store import RunRecord, Store
from grokwatch.wire import PointsBatch, RunCreate, float_values

Points = list[tuple[int, dict[str, float]]]


class RunTable:
    """Live runs keyed by id, backed by a :class:`~grokwatch.store.Store`."""

    def __init__(
        self,
        store: Store,
        limits: TableLimits | None = None,
        *,
        clock: Clock = time.time,
        detector_factory: DetectorFactory | None = None,
        on_forecast: Callable[[float], None] | None = None,
    ) -> None:
        self.store = store
        self.limits = limits or TableLimits()
        self.clock = clock
        self.detector_for = detector_factory or detector_for
        self.backlog = ForecastBacklog(on_forecast=on_forecast)
        """The runs whose forecast waits (every answer comes before its batch's forecast)."""
        self.backlog.on_decided = self._store_actions
        self.refused_values = 0
        """Values refused because their run had too many distinct measure names."""
        self._runs: dict[str, LiveRun] = {}
        self._lock = threading.Lock()
        self.loaded = False

    # -- loading ----------------------------------------------------------------------------

    def load(self) -> int:
        """Rebuild every run that is still live from the store; returns how many."""
        now = self.clock()
        count = 0
        for record in self.store.list_runs():
            if self.limits.expired(record.finished_at, record.updated_at, now):
                continue
            self._put(self._rebuild(record))
            count += 1
        self.loaded = True
        return count

    def _rebuild(self, record: RunRecord) -> LiveRun:
        run = LiveRun(
            run_id=record.run_id,
            created_at=record.created_at,
            updated_at=record.updated_at,
            finished_at=record.finished_at,
            meta=record.meta,
            summary=record.summary,
            detector=self.detector_for(record.meta),
        )
        points = self.store.points(record.run_id)
        if points:
            self._observe(run, points)
        run.n_points = len(points)
        run.last_report = record.updated_at if points else None
        for _, values in points:
            run.measures.update(values)
        run.agent_errors = stored_count(record.summary, "agent_errors")
        run.dropped = stored_count(record.summary, DROPPED_KEY)
        return run

    # -- requests ---------------------------------------------------------------------------

    def register(self, request: RunCreate) -> tuple[LiveRun, bool]:
        """Register a run; returns ``(run, created)``. Re-registering keeps the stored run."""
        run = self._runs.get(request.run_id)
        if run is not None:
            return run, False
        try:
            return self._resident(request.run_id), False
        except UnknownRunError:
            pass
        meta = stored_meta(request)
        detector = self.detector_for(meta)
        self._check_capacity(request.run_id)
        created = self.store.create_run(request.run_id, meta)
        if not created:  # registered concurrently by another writer of the same database
            return self._resident(request.run_id), False
        now = self.clock()
        run = LiveRun(
            run_id=request.run_id,
            created_at=now,
            updated_at=now,
            finished_at=None,
            meta=meta,
            summary={},
            detector=detector,
        )
        self._put(run)
        return run, True

    def ingest(self, run_id: str, batch: PointsBatch) -> Ingested:
        """Store then judge a batch; duplicates (same run and step) are ignored.

        The answer's events and phase are current; its forecast is the run's previous one:
        the batch's waits in :attr:`backlog` (or for a read, :meth:`get`).

        Points may arrive in any order, even after the run finished (a replayed spool): late
        points are stored and judged, and a finished run's stored summary is refreshed with
        the detector's view; the run stays finished.
        """
        done = self.ingest_many([(run_id, batch)])[0]
        if isinstance(done, Exception):
            raise done
        return done

    def ingest_many(self, batches: Sequence[tuple[str, PointsBatch]]) -> list[Ingested | Exception]:
        """:meth:`ingest` several batches, in order, storing them in one transaction.

        Returns each batch's result, or the exception that refused it (an unknown run, the
        cap on live runs, a store failure): one batch's refusal does not fail the others.
        """
        results: dict[int, Ingested | Exception] = {}
        accepted: list[tuple[int, LiveRun, Points]] = []
        for i, (run_id, batch) in enumerate(batches):
            try:
                run = self._resident(run_id)
            except Exception as exc:  # this request's answer (404, 429, 503)
                results[i] = exc
                continue
            points = [(p["step"], float_values(p["values"])) for p in batch.points]
            points.sort(key=itemgetter(0))
            self._cap_measures(run, points)
            accepted.append((i, run, points))
        for (i, run, points), added in zip(accepted, self._store_many(accepted), strict=True):
            if isinstance(added, Exception):
                results[i] = added
                continue
            try:
                results[i] = self._judge(run, points, added, batches[i][1].dropped)
            except Exception as exc:
                results[i] = exc
        return [results[i] for i in range(len(batches))]

    def _store_many(self, accepted: list[tuple[int, LiveRun, Points]]) -> list[int | Exception]:
        """How many points of each batch were new; one transaction for all, or, when that
        fails, one per batch so that each gets its own answer."""
        if not accepted:
            return []
        try:
            return list(self.store.add_points_many([(r.run_id, pts) for _, r, pts in accepted]))
        except Exception as exc:
            if len(accepted) == 1:
                return [exc]
        out: list[int | Exception] = []
        for _, run, points in accepted:
            try:
                out.append(self.store.add_points(run.run_id, points))
            except Exception as exc:
                out.append(exc)
        return out

    def _judge(self, run: LiveRun, points: Points, added: int, dropped: int | None) -> Ingested:
        self._observe(run, points, forecast=False)
        run.n_points += added
        if dropped is not None and dropped > run.dropped:
            run.dropped = dropped  # kept in the stored summary: it survives a restart
            run.summary = {**run.summary, DROPPED_KEY: dropped}
            self.store.update_summary(run.run_id, run.summary)
        if run.finished_at is None:
            run.updated_at = run.last_report = self.clock()
            self._store_actions(run)
        elif added:
            run.summary = {**run.summary, **run.detector.summary()}
            self.store.update_summary(run.run_id, run.summary)
        decision = run.decision
        if run.unsent and decision is not None:  # confirmed by a forecast made after an answer
            change_points = (*run.unsent, *decision.change_points)
            decision = dataclasses.replace(decision, change_points=change_points)
            run.unsent = ()
        return Ingested(run, added, len(points) - added, run.last_step, run.phase, decision)

    def finish(self, run_id: str, summary: Mapping[str, Any]) -> LiveRun:
        """Mark a run finished; the stored summary is the agent's, with the detector's view
        (events, phase, outcome) taking precedence. Finishing twice updates the summary."""
        run = self._resident(run_id)
        self.backlog.flush(run)
        merged = {**summary, **run.detector.summary()}
        run.agent_errors = max(run.agent_errors, stored_count(summary, "agent_errors"))
        run.dropped = max(run.dropped, stored_count(summary, DROPPED_KEY))
        for key, count in ((DROPPED_KEY, run.dropped), ("agent_errors", run.agent_errors)):
            if count or key in summary:  # the counts kept, so that a restart finds them
                merged[key] = count
        self.store.update_summary(run_id, merged, finished=True)
        now = self.clock()
        if run.finished_at is None:
            run.finished_at = now
        run.updated_at = now
        run.summary = merged
        return run

    def get(self, run_id: str) -> LiveRun:
        """A run from memory, or rebuilt from the store (not kept when it is no longer live)."""
        run = self._runs.get(run_id)
        if run is not None:
            self.backlog.flush(run)
            return run
        return self._rebuild(self.store.get_run(run_id))

    def records(self) -> list[RunRecord]:
        return self.store.list_runs()

    # -- lifetime ---------------------------------------------------------------------------

    def sweep(self) -> list[str]:
        """Unload runs past their TTL; returns their ids."""
        now = self.clock()
        with self._lock:
            gone = [
                rid
                for rid, run in self._runs.items()
                if self.limits.expired(run.finished_at, run.updated_at, now)
            ]
            for rid in gone:
                del self._runs[rid]
                self.backlog.drop(rid)
        return gone

    def current(self) -> list[LiveRun]:
        """The live runs, with the TTL applied even between sweeps."""
        now = self.clock()
        with self._lock:
            runs = list(self._runs.values())
        return [r for r in runs if not self.limits.expired(r.finished_at, r.updated_at, now)]

    def views(self) -> list[RunView]:
        """Exporter views of the live runs."""
        return [r.view() for r in self.current()]

    def live(self) -> Sequence[LiveRun]:
        with self._lock:
            return list(self._runs.values())

    def is_resident(self, run_id: str) -> bool:
        """In memory (no rebuild needed), whether or not its TTL has passed."""
        return run_id in self._runs

    def is_live(self, run_id: str) -> bool:
        run = self._runs.get(run_id)
        return run is not None and not self.limits.expired(
            run.finished_at, run.updated_at, self.clock()
        )

    @property
    def live_unfinished(self) -> int:
        with self._lock:
            return sum(1 for r in self._runs.values() if r.finished_at is None)

    def __len__(self) -> int:
        return len(self._runs)

    # -- internals --------------------------------------------------------------------------

    def _cap_measures(self, run: LiveRun, points: Points) -> None:
        """Drop (and count) the values of measure names beyond the run's cap, in place."""
        cap = self.limits.max_measures_per_run
        for _, values in points:
            if run.measures.issuperset(values):  # the usual case: no new name, no new set
                continue
            new = values.keys() - run.measures
            room = cap - len(run.measures)
            if len(new) <= room:
                run.measures.update(new)
                continue
            keep = sorted(new)[: max(room, 0)]
            run.measures.update(keep)
            for name in new.difference(keep):
                del values[name]
                run.refused_values += 1
                self.refused_values += 1

    def _check_capacity(self, run_id: str) -> None:
        if self.live_unfinished >= self.limits.max_live_runs:
            raise RunLimitError(
                f"cannot take run {run_id!r}: {self.limits.max_live_runs} live runs is the "
                "limit (finish runs, or raise GROKWATCH_MAX_LIVE_RUNS)"
            )

    def _resident(self, run_id: str) -> LiveRun:
        """The run in memory, reloading an unloaded one (live again) from the store."""
        run = self._runs.get(run_id)
        if run is not None:
            return run
        record = self.store.get_run(run_id)
        run = self._rebuild(record)
        if record.finished_at is None:
            self._check_capacity(run_id)
            run.updated_at = self.clock()
            self._put(run)
        return run

    def _put(self, run: LiveRun) -> None:
        with self._lock:
            self._runs[run.run_id] = run

    def _store_actions(self, run: LiveRun) -> None:
        """Write the summary when the run policy advised a new stop or extension (the run
        table keeps every action as an event, not only at finish)."""
        control = run.detector.control
        if control is None or control.n_actions == run.actions_stored or run.finished_at:
            return
        run.actions_stored = control.n_actions
        run.summary = {**run.summary, **run.detector.summary()}
        self.store.update_summary(run.run_id, run.summary)

    def _observe(self, run: LiveRun, points: Points, *, forecast: bool = True) -> None:
        """Judge points sorted by step (one detector update for the whole batch)."""
        previous = run.detector.decision
        run.count_alert(previous, run.detector.update_many(points, forecast=forecast))
        if forecast:  # up to date: no longer waiting, if it was
            self.backlog.caught_up(run.run_id)
        elif run.detector.pending:
            self.backlog.add(run)
        top = len(points) - 1
        step = points[top][0]
        if run.last_step is None or step > run.last_step:
            while top and points[top - 1][0] == step:  # the first of equal steps is the one kept
                top -= 1
            run.last_step = step
            run.last_values = points[top][1]
