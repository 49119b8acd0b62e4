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

Without a run policy the action stays ``CONTINUE``: the detector reports, it does not advise
stopping or extending. With one (``policy=RunPolicy(...)``, opt-in) the decision goes through
its :class:`~grokwatch.policy.RunControl`, which may turn it into ``STOP`` or ``EXTEND``
(:mod:`grokwatch.policy`); the same happens in the HTTP service when the run registered a
policy. The forecast's false-alarm rate is in docs/evaluation.md.
"""

from __future__ import annotations

import array
import bisect
import functools
import itertools
import math
import numbers
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
from grokwatch.forecast.features import rows_of
from grokwatch.forecast.online import MIN_CONFIDENCE, Forecaster, RunForecaster
from grokwatch.policy import RunControl, RunPolicy

DEFAULT = "default"
"""``forecaster=DEFAULT`` picks the fitted model shipped with grokwatch."""


def resolve_forecaster(forecaster: Forecaster | str | Path | None) -> Forecaster | None:
    """``None`` (rule-based), ``"default"`` (the shipped model), a model file path, or any
    :class:`~grokwatch.forecast.online.Forecaster`."""
    if forecaster is None:
        return None
    if isinstance(forecaster, str | Path):
        from grokwatch.forecast.io import load, load_default

        if str(forecaster) == DEFAULT:
            return load_default()
        return load(forecaster)
    return forecaster


_TRACKER_MEASURES = frozenset({"train_accuracy", "test_accuracy", "train_loss", "train_loss_step"})
_ABSENT = math.copysign(math.nan, -1.0)
"""Marks a measure absent from an evaluation; a measured NaN is stored as +NaN."""

Point = tuple[int, Mapping[str, float]]

_MISSING = object()


class _NotAFloat(Exception):
    """A value :meth:`_Evaluations.extend` leaves to :meth:`_Evaluations.add`."""


def _stored(value: object) -> float:
    """How a value is stored: a real number as a float (a NaN of either sign as +NaN), an
    absent measure (``_MISSING``) as ``_ABSENT``; anything else raises :class:`_NotAFloat`
    (the evaluation then keeps its values in a dict)."""
    if type(value) is float:
        return value if value == value else math.nan
    if value is _MISSING:
        return _ABSENT
    if isinstance(value, numbers.Real):
        v = float(value)
        return v if v == v else math.nan
    raise _NotAFloat


def _all_floats(points: Sequence[Point], columns: Sequence[str]) -> array.array[float] | None:
    """The values of ``columns`` of every point, row after row, as :func:`_stored` keeps them,
    when every point has every column and every value is a ``float`` (the common case, read
    in C); ``None`` otherwise."""
    if not columns:
        return array.array("d")
    get = _getter(tuple(columns))
    try:
        rows = [get(values) for _, values in points]
    except (KeyError, TypeError):
        return None
    flat = list(itertools.chain.from_iterable(rows)) if len(columns) > 1 else rows
    if set(map(type, flat)) != {float}:
        return None
    # a measured NaN is stored as +NaN (-NaN marks an absent measure)
    if len(flat) < 256:  # a few points: cheaper than numpy's calls
        return array.array("d", [x if x == x else math.nan for x in flat])
    data = array.array("d", flat)
    view = np.frombuffer(data)
    signed = np.isnan(view) & np.signbit(view)
    if signed.any():
        view[signed] = math.nan
    return data


@functools.lru_cache(maxsize=64)
def _getter(columns: tuple[str, ...]) -> Callable[[Mapping[str, float]], Any]:
    return operator.itemgetter(*columns)


@functools.lru_cache(maxsize=64)
def _measures_kept(reads: frozenset[str]) -> tuple[str, ...]:
    """The measures a detector keeps, sorted: what its event rules and its forecaster read
    (one tuple shared by all the detectors of a forecaster)."""
    return tuple(sorted(_TRACKER_MEASURES | reads))


class _Evaluations:
    """A run's evaluations in step order, for replaying them when a point arrives late.

    One float per kept measure and evaluation, in one ``array("d")`` (row-major), instead of a
    dict per evaluation (a dict per evaluation would take most of the service's memory per
    live run). ``keep``: the measures worth keeping, sorted. A measure an evaluation lacks is
    stored as -NaN (a measured NaN as +NaN). A point with a value that is not a real number
    keeps its kept values as given, in a dict.
    """

    __slots__ = ("_columns", "_data", "_index", "_keep", "_raw", "steps")

    def __init__(self, keep: tuple[str, ...]) -> None:
        self.steps = array.array("q")
        self._data = array.array("d")
        self._columns: list[str] = []
        self._index: dict[str, int] = {}
        self._keep = keep
        self._raw: dict[int, dict[str, float]] = {}

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, step: int, values: Mapping[str, float]) -> bool | None:
        """Insert an evaluation: ``True`` when it is the newest, ``False`` when it went
        before the newest, ``None`` when ``step`` is already here (nothing changes)."""
        steps = self.steps
        newest = not steps or step > steps[-1]
        if not newest:
            at = bisect.bisect_left(steps, step)
            if steps[at] == step:
                return None
        row = [_ABSENT] * len(self._columns)
        keep, index = self._keep, self._index
        items: Iterable[tuple[str, float]] = values.items()
        if len(keep) < len(values):
            items = [(name, values[name]) for name in keep if name in values]
        not_a_float = False
        for name, value in items:
            j = index.get(name)
            if j is None:
                if name not in keep:
                    continue
                j = self._add_column(name)
                row.append(_ABSENT)
            try:
                row[j] = _stored(value)
            except _NotAFloat:
                not_a_float = True
        if not_a_float:
            self._raw[step] = {k: v for k, v in values.items() if k in index}
        if newest:
            steps.append(step)
            self._data.extend(row)
        else:
            width = len(self._columns)
            steps.insert(at, step)
            self._data[at * width : at * width] = array.array("d", row)
        return newest

    def extend(self, points: Sequence[Point]) -> bool:
        """Append evaluations that all come after the newest, in step order, at once (what
        :meth:`add` on each would store); ``False``, storing nothing new, when the batch is
        not like that or holds a value that is not a real number (then :meth:`add` each)."""
        if not points:
            return False
        steps = [step for step, _ in points]
        if self.steps and steps[0] <= self.steps[-1]:
            return False
        if any(b <= a for a, b in itertools.pairwise(steps)):
            return False
        present = set().union(*[values.keys() for _, values in points])
        for name in self._keep:
            if name not in self._index and name in present:
                self._add_column(name)
        columns = self._columns
        data = _all_floats(points, columns)
        if data is None:  # a measure absent somewhere, or a value not a float: one at a time
            raw = [values.get(name, _MISSING) for _, values in points for name in columns]
            try:
                data = array.array("d", [_stored(x) for x in raw])
            except _NotAFloat:
                return False
        self._data.extend(data)
        self.steps.extend(steps)
        return True

    def _add_column(self, name: str) -> int:
        width = len(self._columns)
        if self.steps:
            old, wide = self._data, array.array("d", [_ABSENT]) * (len(self.steps) * (width + 1))
            for i in range(len(self.steps)):
                wide[i * (width + 1) : i * (width + 1) + width] = old[i * width : (i + 1) * width]
            self._data = wide
        self._columns.append(name)
        self._index[name] = width
        return width

    def point(self, i: int) -> Point:
        """The ``i``-th evaluation: its step and the kept values as they were measured."""
        step = self.steps[i]
        raw = self._raw.get(step) if self._raw else None
        if raw is not None:
            return step, raw
        width = len(self._columns)
        row = self._data[i * width : (i + 1) * width]
        return step, {
            name: v
            for name, v in zip(self._columns, row, strict=True)
            if v == v or math.copysign(1.0, v) > 0
        }

    def __iter__(self) -> Iterator[Point]:
        return (self.point(i) for i in range(len(self.steps)))

    def rows(
        self, start: int, columns: Sequence[str]
    ) -> tuple[list[int], np.ndarray, np.ndarray] | None:
        """The evaluations from index ``start`` on as arrays: their steps, the values of
        ``columns`` ``(n, C)`` and which were absent; ``None`` when one of them holds a value
        that is not a real number (only its dict keeps it)."""
        steps = self.steps[start:].tolist()
        if self._raw and any(step in self._raw for step in steps):
            return None
        width = len(self._columns)
        data = np.array(self._data[start * width :], dtype=float).reshape(len(steps), width)
        values = np.full((len(steps), len(columns)), np.nan)
        absent = np.ones(values.shape, dtype=bool)
        for c, name in enumerate(columns):
            j = self._index.get(name)
            if j is not None:
                col = data[:, j]
                values[:, c] = col
                absent[:, c] = np.isnan(col) & np.signbit(col)
        return steps, values, absent


class RunDetector:
    """Detector for one run: rule-based events and phases plus, with a forecaster, forecasts.

    ``observe`` accepts points in any order; a step seen before is ignored (idempotent), a step
    older than the newest rebuilds the event tracker (and the forecaster's run state) from the
    sorted history. :meth:`update_many` takes a batch at once. ``forecaster``: see
    :func:`resolve_forecaster`; ``min_confidence``: the confidence below which the forecast is
    attached but not acted on; ``policy``: a :class:`~grokwatch.policy.RunPolicy` to turn
    decisions into stop/extend advice (``None``: always ``CONTINUE``).

    The history kept for those rebuilds holds only the measures the event rules and the
    forecaster read, as compact arrays. The run's one :class:`~grokwatch.events.EventTracker`
    is the detector's: the forecaster reads its events and phase instead of tracking them
    again. ``phase_changes`` counts how often the phase changed from one update to
    the next.
    """

    def __init__(
        self,
        rules: EventRules | None = None,
        *,
        budget: int | None = None,
        forecaster: Forecaster | str | Path | None = DEFAULT,
        min_confidence: float = MIN_CONFIDENCE,
        policy: RunPolicy | None = None,
    ) -> None:
        self.rules = rules or EventRules()
        self.budget = budget
        self.forecaster = resolve_forecaster(forecaster)
        self.min_confidence = min_confidence
        self._tracker = EventTracker(self.rules)
        self._run: RunForecaster | None = self._start()
        self.policy = policy
        self.control: RunControl | None = None
        if policy is not None:
            self.control = policy.start(budget=budget, forecaster=self.forecaster, run=self._run)
        reads = () if self._run is None else self._run.columns
        self._history = _Evaluations(_measures_kept(frozenset(reads)))
        self.forecast: Forecast | None = None
        self.decision: Decision | None = None
        self.phase_changes = 0
        self._pending = 0  # newest evaluations the forecaster has not seen (deferred)
        self._replay = False  # late points arrived while deferred: replay the forecaster

    def _start(self) -> RunForecaster | None:
        if self.forecaster is None:
            return None
        return self.forecaster.start(budget=self.budget, rules=self.rules, tracker=self._tracker)

    def observe(self, step: int, values: Mapping[str, float]) -> Decision:
        """Add one evaluation and return the decision at the newest step."""
        return self.update_many(((step, values),))

    def update_many(self, points: Iterable[Point], *, forecast: bool = True) -> Decision:
        """Add evaluations in the given order and return the decision at the newest step.

        The events, phase, forecast and decision afterwards are those ``observe`` on each
        point in turn leaves (the decision's change points are those confirmed at the last
        point, none when it was a duplicate), but the forecaster predicts once, and a batch
        with late points replays the history once. ``phase_changes`` then counts the change
        across that replay once. No points change nothing (a detector without any raises
        ``ValueError``: it has no decision to return).

        ``forecast=False`` defers the forecaster: the events and phase are brought up to date
        (cheap), the decision carries the forecast as it was, and the points wait for
        :meth:`flush` -- which leaves exactly the forecast an undeferred update would have.
        """
        history = self._history
        before = self._tracker.phase if len(history) else None
        points = points if isinstance(points, list) else list(points)
        fresh: list[Point] = []
        late = last_new = seen = False
        if history.extend(points):  # all newer than the newest, in order: the common case
            fresh, last_new, seen = points, True, True
        else:
            for step, values in points:
                seen = True
                newest = history.add(step, values)
                last_new = newest is not None
                if newest is None:
                    continue
                if late or not newest:
                    late = True
                else:
                    fresh.append((step, values))
        if not seen:
            if self.decision is None:
                raise ValueError("update_many needs at least one point for a detector without any")
            return self.decision
        if late:
            self._tracker = EventTracker(self.rules)
            self._track(list(history), count=False)
            if before is not None and self._tracker.phase is not before:
                self.phase_changes += 1
            self._replay, self._pending = self._run is not None, 0
        elif fresh:
            self._track(fresh, count=True)
            if self._run is not None and not self._replay:
                self._pending += len(fresh)
        new: tuple[ChangePoint, ...] = ()
        if forecast:
            self._catch_up()
            if last_new and self._run is not None:
                new = tuple(self._run.new_change_points)
        self.decision = self._decide(new)
        return self.decision

    @property
    def pending(self) -> bool:
        """Whether points wait for the forecaster (see ``update_many(forecast=False)``)."""
        return self._run is not None and (self._replay or self._pending > 0)

    @property
    def pending_points(self) -> int:
        """How many points the forecaster will read to catch up (all of them for a replay)."""
        if not self.pending:
            return 0
        return len(self._history) if self._replay else self._pending

    def flush(self) -> Decision | None:
        """Feed the deferred points to the forecaster and decide again; ``None`` when
        nothing was waiting. The decision's change points are those confirmed meanwhile."""
        if not self.pending:
            return None
        self._catch_up()
        assert self._run is not None
        self.decision = self._decide(tuple(self._run.new_change_points))
        return self.decision

    def _catch_up(self) -> None:
        if self._replay:
            self._run = self._start()
            if self.control is not None:
                self.control.run = self._run
            self._forecast(0)
        elif self._pending:
            self._forecast(len(self._history) - self._pending)
        self._pending, self._replay = 0, False

    def _track(self, points: list[Point], *, count: bool) -> None:
        tracker = self._tracker
        for step, v in points:
            before = tracker.phase if count and tracker.n else None
            tracker.update(
                step,
                train_acc=v.get("train_accuracy"),
                test_acc=v.get("test_accuracy"),
                train_loss=v.get("train_loss_step", v.get("train_loss")),
            )
            if before is not None and tracker.phase is not before:
                self.phase_changes += 1

    def _forecast(self, start: int) -> None:
        """Feed the forecaster the history from index ``start`` on, as arrays."""
        run, history = self._run, self._history
        if run is None or start >= len(history):
            return
        rows = history.rows(start, run.columns)
        if rows is None:  # a value that is not a real number: only its dict keeps it
            rows = rows_of([history.point(i) for i in range(start, len(history))], run.columns)
        self.forecast = run.update_rows(*rows)

    def _decide(self, new: tuple[ChangePoint, ...]) -> Decision:
        decision = self._judge(new)
        return decision if self.control is None else self.control.decide(decision)

    def _judge(self, new: tuple[ChangePoint, ...]) -> Decision:
        phase = self._tracker.phase
        last = self._history.steps[-1]
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
            **({} if self.control is None else {"control": self.control.summary()}),
        }
