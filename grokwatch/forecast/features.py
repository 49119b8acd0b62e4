"""Causal, scale-free features of a run up to step t.

:class:`FeatureState` consumes a run's evaluations one at a time, in step order, and returns
the feature vector at each of them. Every feature at step ``t`` is a function of the points
at steps ``<= t`` only (a test appends future points and checks that nothing at ``t``
changes), and the same code runs online (the detector, one update per evaluation) and offline
(fitting and evaluating replay each corpus run through it).

Cadence and scale. The agent evaluates every 500 steps by default, the corpus every 50, so no
feature counts evaluations: trends are read on a log-step axis by linear interpolation of the
measure at ``t / RATIO`` and ``t / RATIO**2`` (slopes per log-step, "how much did it change
while the step grew by half"), events are placed by step ratios (``log(t / t_mem)``), and
the budget enters as ``log(budget / t)``. Measures whose size depends on the model (weight
norm, losses, circuit complexity, MC-dropout variance) enter only through logs of ratios to
their own past (drop from the running maximum, change since memorization) or through slopes
of their logs, so the features mean the same for p = 23 and p = 97, a 16-wide and a 128-wide
embedding, an MLP and a transformer. Accuracies, sparsity, entropies normalized to [0, 1] and
cosines are scale-free already and enter as levels too.

NaN policy. A measure that is missing at a step (not computed, not finite, not applicable --
no embedding) does not move its series; a feature whose inputs were never seen is NaN, and
:class:`~grokwatch.forecast.forecaster.GrokForecaster` imputes NaN features with the training
medians and lowers the forecast's confidence (``FeatureState.missing`` names the measures).
Non-finite inputs are counted in ``non_finite``; they never raise.

Bump :data:`SCHEMA_VERSION` whenever a feature's definition or the order of
:data:`FEATURE_NAMES` changes: a saved model records both and refuses to load against a
different schema (:mod:`grokwatch.forecast.io`).
"""

from __future__ import annotations

import array
import bisect
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from grokwatch.decision import ChangePoint, Direction
from grokwatch.events import EventRules, EventTracker
from grokwatch.forecast.changepoints import (
    BayesianOnlineCPD,
    ChangePointDetector,
    LogTimeSlopes,
    WindowKernelCPD,
)

__all__ = [
    "CHANGEPOINT_MEASURES",
    "FEATURE_NAMES",
    "INPUT_COLUMNS",
    "INPUT_MEASURES",
    "KEY_MEASURES",
    "RATIO",
    "SCHEMA_VERSION",
    "FeatureState",
    "input_rows",
    "rows_of",
    "run_features",
]

SCHEMA_VERSION = 1
RATIO = 1.5
"""Log-step window of the trend features: slopes are read over ``[t / RATIO, t]``."""

_LN_RATIO = math.log(RATIO)
_PRUNE_AT = 8
"""Stale points (before ``t / RATIO**2``) a series lets pile up before dropping them; no
feature reads them, so this trades memory (the detector service holds many runs) for time."""
_MAX_SLOPE = 100.0
"""Slopes per log-step fed to change-point detection are clipped to +-100 (real ones are
O(1-10)); absurd input then cannot overflow the detectors."""

KEY_MEASURES = (
    "train_accuracy",
    "test_accuracy",
    "train_loss",
    "test_loss",
    "weight_norm",
)
"""Measures whose absence lowers the forecast's confidence the most (the rest are extras)."""

_MEASURES = (
    *KEY_MEASURES,
    "weight_entropy",
    "activation_sparsity",
    "spectral_entropy",
    "grad_weight_cosine",
    "circuit_complexity_mean",
    "mc_dropout_accuracy_var",
    "mc_dropout_accuracy_mean",
    "softmax_collapse",
    "loss_spectral_energy",
    "loss_hjorth_mobility",
    "fourier_gini",
    "embedding_band_score",
    "embedding_bimodality",
)

CHANGEPOINT_MEASURES = (
    "test_accuracy",
    "test_loss",
    "weight_norm",
    "train_loss",
    "spectral_entropy",
)
"""Streams watched by the change-point detector (losses and the norm on a log scale)."""
_LOG_CP = {"test_loss", "weight_norm", "train_loss"}

FEATURE_NAMES: tuple[str, ...] = (
    # events and budget
    "memorized",
    "log_t_over_t_mem",
    "log_budget_over_t",
    # accuracies
    "train_accuracy",
    "test_accuracy",
    "test_rise_since_mem",
    "test_accuracy_slope",
    "test_accuracy_accel",
    "projected_grok_margin",
    # losses
    "log_test_loss_drop_from_peak",
    "test_loss_log_slope",
    "train_loss_log_slope",
    "log_train_loss_rel_start",
    "log_test_over_train_loss",
    # weights
    "log_weight_norm_drop_from_peak",
    "weight_norm_log_slope",
    "log_weight_norm_since_mem",
    "weight_entropy_rel_slope",
    # activations and representations
    "activation_sparsity",
    "activation_sparsity_slope",
    "spectral_entropy",
    "spectral_entropy_slope",
    "grad_weight_cosine",
    "log_circuit_complexity_drop_from_peak",
    "circuit_complexity_log_slope",
    "mc_dropout_var_rel_peak",
    "log10_mc_dropout_var",
    "mc_dropout_minus_test_accuracy",
    "softmax_collapse",
    "log_loss_energy_rel",
    "loss_hjorth_mobility",
    # embeddings (NaN without an embedding)
    "fourier_gini",
    "fourier_gini_slope",
    "embedding_band_score",
    "embedding_bimodality",
    # change since memorization (0 before it)
    "test_accuracy_since_mem",
    "log_test_loss_since_mem",
    "log_train_loss_since_mem",
    "log_circuit_complexity_since_mem",
    "spectral_entropy_since_mem",
    "activation_sparsity_since_mem",
    "fourier_gini_since_mem",
    # change points
    "log_t_since_cp_test_accuracy",
    "last_cp_dir_test_accuracy",
    "log_t_since_cp_test_loss",
    "last_cp_dir_test_loss",
    "log_t_since_cp_weight_norm",
    "last_cp_dir_weight_norm",
    "change_points_since_mem",
)


INPUT_COLUMNS: tuple[str, ...] = (*_MEASURES, "train_loss_step", "circuit_complexity")
"""The columns of :meth:`FeatureState.add_rows`: the measures, then the two aliases."""
INPUT_MEASURES = frozenset(INPUT_COLUMNS)
"""Every key of an evaluation's values that :meth:`FeatureState.update` reads."""

_M = len(_MEASURES)
_COL = {name: j for j, name in enumerate(INPUT_COLUMNS)}
_ALIASES = ((_COL["train_loss"], _COL["train_loss_step"]),
            (_COL["circuit_complexity_mean"], _COL["circuit_complexity"]))  # fmt: skip
"""(measure, alias): an evaluation without the measure reads the alias (only ratios of the
circuit complexity are used, so its total stands in for its mean)."""
_TRENDS = (
    "test_accuracy",
    "test_loss",
    "train_loss",
    "weight_norm",
    "weight_entropy",
    "activation_sparsity",
    "spectral_entropy",
    "circuit_complexity_mean",
    "fourier_gini",
)
"""The measures whose trends (slopes) are features: the only ones kept step by step."""
_TREND_COLS = [_COL[m] for m in _TRENDS]
_TREND_OF = {_COL[m]: k for k, m in enumerate(_TRENDS)}
_CP_COLS = [_COL[m] for m in CHANGEPOINT_MEASURES]
_CP_LOG = [i for i, m in enumerate(CHANGEPOINT_MEASURES) if m in _LOG_CP]


class _Series:
    """One measure as the features read it (a view built per vector): running extremes, its
    value when the run memorized and, for the :data:`_TRENDS`, interpolation over its points."""

    __slots__ = ("at_mem", "first", "last", "max", "min", "seen", "steps", "values")

    def __init__(self, seen: bool, first: float, last: float, extremes: tuple[float, float],
                 at_mem: float, trend: _Trend | None) -> None:  # fmt: skip
        self.seen, self.first, self.last, self.at_mem = seen, first, last, at_mem
        self.max, self.min = extremes
        self.steps = _NO_STEPS if trend is None else trend.steps
        self.values = _NO_VALUES if trend is None else trend.values

    def at(self, step: float) -> float:
        """Linear interpolation at ``step`` (the first value before the first step)."""
        s, v = self.steps, self.values
        if not s:
            return math.nan
        i = bisect.bisect_right(s, step)
        if i == 0:
            return v[0]
        if i == len(s):
            return v[-1]
        s0, s1 = s[i - 1], s[i]
        return v[i - 1] + (v[i] - v[i - 1]) * (step - s0) / (s1 - s0)

    def slope(self, t: int, k: int = 0) -> float:
        """Change per log-step over ``[t / RATIO**(k+1), t / RATIO**k]``."""
        if not self.seen:
            return math.nan
        hi = t / RATIO**k
        return (self.at(hi) - self.at(hi / RATIO)) / _LN_RATIO


_NO_STEPS, _NO_VALUES = array.array("i"), array.array("d")
_INT32_MAX = 2**31 - 1


class _Trend:
    """One :data:`_TRENDS` measure's finite points in step order.

    Trends read a measure at ``t / RATIO**2`` at the earliest, so the points before it but
    the last one are dropped once :data:`_PRUNE_AT` of them pile up: memory stays bounded on
    long runs and nothing read changes.
    """

    __slots__ = ("_size_after_prune", "steps", "values")

    def __init__(self) -> None:
        self.steps = array.array("i")  # 4-byte steps until one does not fit, then 8
        self.values = array.array("d")
        self._size_after_prune = 0

    def extend(self, steps: list[int], values: Iterable[float]) -> None:
        if self.steps.typecode == "i" and steps and max(steps[-1], -steps[0]) > _INT32_MAX:
            self.steps = array.array("q", self.steps)
        self.steps.extend(steps)
        self.values.extend(values)

    def prune(self, t: int) -> None:
        if len(self.steps) < self._size_after_prune + _PRUNE_AT:
            return
        stale = bisect.bisect_left(self.steps, t / RATIO**2) - 1
        if stale >= _PRUNE_AT:
            del self.steps[:stale]
            del self.values[:stale]
        self._size_after_prune = len(self.steps)


def _as_float(raw: object) -> float:
    """``float(raw)``, NaN for anything that is not a number (never raises)."""
    try:
        return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return math.nan


def _log(x: float) -> float:
    return math.log(x) if x > 0 else math.nan


def _log_ratio(a: float, b: float) -> float:
    return math.log(a) - math.log(b) if a > 0 and b > 0 else math.nan


def rows_of(
    points: Sequence[tuple[int, Mapping[str, object]]],
    columns: Sequence[str] = INPUT_COLUMNS,
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Evaluations as :meth:`FeatureState.add_rows` takes them: the steps, the values of
    ``columns`` ``(n, C)`` (NaN for anything that is not a number) and which of them are
    absent (a missing key or ``None``)."""
    steps = [int(step) for step, _ in points]
    raw = np.array([[v.get(name) for name in columns] for _, v in points], dtype=object)
    raw = raw.reshape(len(steps), len(columns))
    absent = raw == None  # noqa: E711 -- elementwise
    raw[absent] = math.nan
    try:
        rows = raw.astype(float)
    except (TypeError, ValueError, OverflowError):
        rows = np.vectorize(_as_float, otypes=[float])(raw)
    return steps, rows, absent


class FeatureState:
    """The features of one run, updated as evaluations arrive (see the module docstring).

    ``update(step, values)`` expects steps in increasing order (a step not larger than the
    last is ignored and returns the previous vector); ``values`` maps measure names (the
    agent's history keys) to floats. :meth:`add_rows` takes many evaluations as arrays at
    once and leaves exactly the state that ``update`` on each in turn leaves (the detector
    service and the offline replay use it). ``changepoints`` picks the change-point method
    feeding the features: ``"bayes"`` (default) or ``"kernel"``.
    """

    def __init__(
        self,
        *,
        budget: int | None = None,
        rules: EventRules | None = None,
        tracker: EventTracker | None = None,
        changepoints: str = "bayes",
    ) -> None:
        if budget is not None and budget < 1:
            raise ValueError(f"budget must be a positive int or None, got {budget=!r}")
        self.budget = budget
        self.rules = rules or EventRules()
        self._feeds_tracker = tracker is None
        self.tracker = tracker or EventTracker(self.rules, history=False)
        """The run's events and phase: a tracker of its own, or the one the caller feeds every
        evaluation before handing it over (the detector's)."""
        self.n_points = 0
        self.non_finite = 0
        self.last_non_finite = 0
        """Non-finite values in the last evaluation added."""
        self.last_step: int | None = None
        # per measure: seen, first / last finite value, running extremes, value at t_mem
        self._seen = np.zeros(_M, dtype=bool)
        self._first = np.full(_M, np.nan)
        self._last = np.full(_M, np.nan)
        self._max = np.full(_M, -np.inf)
        self._min = np.full(_M, np.inf)
        self._at_mem = np.full(_M, np.nan)
        self._trends = tuple(_Trend() for _ in _TRENDS)
        self._slopes = LogTimeSlopes(len(CHANGEPOINT_MEASURES), min_step=2)
        detector: ChangePointDetector
        if changepoints == "bayes":
            detector = BayesianOnlineCPD(CHANGEPOINT_MEASURES)
        elif changepoints == "kernel":
            detector = WindowKernelCPD(CHANGEPOINT_MEASURES)
        else:
            raise ValueError(f"changepoints must be 'bayes' or 'kernel', got {changepoints=!r}")
        self._cpd = detector
        self.change_points: list[ChangePoint] = []
        self.new_change_points: list[ChangePoint] = []
        self._last_cp: dict[str, ChangePoint] = {}
        self._test_low = math.inf
        self._vector: np.ndarray | None = np.full(len(FEATURE_NAMES), np.nan)

    # -- input -------------------------------------------------------------------------------

    def update(self, step: int, values: Mapping[str, float]) -> np.ndarray:
        """Add the evaluation at ``step`` and return the feature vector at ``step``."""
        self.add(step, values)
        return self.vector()

    def add(self, step: int, values: Mapping[str, float]) -> None:
        """Add the evaluation at ``step`` without computing the feature vector: replaying many
        evaluations and reading :meth:`vector` once gives what ``update`` gives at the last."""
        self.add_rows(*rows_of(((step, values),)))

    def add_rows(self, steps: Sequence[int], rows: np.ndarray, absent: np.ndarray) -> None:
        """Add evaluations given as arrays (see :func:`rows_of`): ``rows[i]`` holds the values
        of :data:`INPUT_COLUMNS` at ``steps[i]``, ``absent[i]`` which of them were not
        reported. A step not after every step before it is ignored."""
        self.new_change_points = []
        keep, last = [], self.last_step
        for i, step in enumerate(steps):
            if last is None or step > last:
                keep.append(i)
                last = step
        if not keep:
            return
        if len(keep) < len(steps):
            steps, rows, absent = [steps[i] for i in keep], rows[keep], absent[keep]
        else:
            steps = list(steps)
        x, finite = self._measures(rows, absent)
        mem_row = self._track(steps, x, rows, absent)
        self._update_running(x, finite, mem_row)
        for trend, kept, values in zip(self._trends, finite[:, _TREND_COLS].T.tolist(),
                                        x[:, _TREND_COLS].T.tolist(), strict=True):  # fmt: skip
            if any(kept):
                trend.extend(
                    list(itertools.compress(steps, kept)), itertools.compress(values, kept)
                )
                trend.prune(steps[-1])
        self._update_changepoints(steps, x[:, _CP_COLS])
        self.last_step = steps[-1]
        self.n_points += len(steps)
        self._vector = None

    def _measures(self, rows: np.ndarray, absent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The measures of each row (aliases filled in, NaN where absent or not finite) and
        where they are finite; counts the values that were reported but not finite."""
        x, gone = rows[:, :_M].copy(), absent[:, :_M].copy()
        for j, alias in _ALIASES:
            use = gone[:, j] & ~absent[:, alias]
            x[use, j], gone[use, j] = rows[use, alias], False
        finite = np.isfinite(x)
        bad = (~gone & ~finite).sum(axis=1)
        self.non_finite += int(bad.sum())
        self.last_non_finite = int(bad[-1])
        x[~finite] = np.nan
        return x, finite

    def _update_running(self, x: np.ndarray, finite: np.ndarray, mem_row: int | None) -> None:
        """First, last and extreme values, the values at memorization and the lowest test
        accuracy since, brought up to the last row."""
        if mem_row is not None:  # each measure's latest value at the memorizing row
            upto = finite[: mem_row + 1]
            got = upto.any(axis=0)
            self._at_mem = self._last.copy()
            self._at_mem[got] = x[mem_row - np.argmax(upto[::-1], axis=0)[got], np.flatnonzero(got)]
        has = finite.any(axis=0)
        if has.any():
            cols = np.flatnonzero(has)
            new = has & ~self._seen
            if new.any():
                self._first[new] = x[np.argmax(finite, axis=0)[new], np.flatnonzero(new)]
            self._seen |= has
            self._max = np.maximum(self._max, np.where(finite, x, -np.inf).max(axis=0))
            self._min = np.minimum(self._min, np.where(finite, x, np.inf).min(axis=0))
            self._last[has] = x[len(x) - 1 - np.argmax(finite[::-1], axis=0)[has], cols]
        if self.tracker.t_mem is not None:
            test = x[0 if mem_row is None else mem_row :, _COL["test_accuracy"]]
            test = test[np.isfinite(test)]
            if test.size:
                self._test_low = min(self._test_low, float(test.min()))

    def _track(
        self, steps: list[int], x: np.ndarray, rows: np.ndarray, absent: np.ndarray
    ) -> int | None:
        """Feed the event tracker (unless the caller does); the row at which the run
        memorized, if in this batch."""
        tracker = self.tracker
        if self._feeds_tracker:
            train, test = x[:, _COL["train_accuracy"]].tolist(), x[:, _COL["test_accuracy"]]
            # the tracker's loss: the step loss if reported, else the evaluated one
            step_loss = ~absent[:, _COL["train_loss_step"]]
            loss = np.where(
                step_loss, rows[:, _COL["train_loss_step"]], rows[:, _COL["train_loss"]]
            )
            reported = step_loss | ~absent[:, _COL["train_loss"]]
            for i, step in enumerate(steps):
                tracker.update(
                    step,
                    train_acc=train[i],
                    test_acc=float(test[i]),
                    train_loss=float(loss[i]) if reported[i] else None,
                )
        t_mem = tracker.t_mem
        if t_mem is None or not steps[0] <= t_mem <= steps[-1]:
            return None
        return bisect.bisect_left(steps, t_mem)

    def vector(self) -> np.ndarray:
        """The feature vector at the last step added (all NaN before the first)."""
        if self._vector is None:
            self._vector = self._compute(max(self.last_step or 0, 1))
        return self._vector.copy()

    def _update_changepoints(self, steps: list[int], x: np.ndarray) -> None:
        # The slopes read each watched measure's latest finite value (log scale where so) at
        # every grid step; the slope sampler carries the latest forward itself.
        for step_cp, slopes in self._slopes.update_many(steps, x, log=_CP_LOG):
            found = self._cpd.update(step_cp, np.clip(slopes, -_MAX_SLOPE, _MAX_SLOPE))
            for cp in found:
                self._last_cp[cp.measure] = cp
            self.change_points.extend(found)
            if step_cp == steps[-1]:
                self.new_change_points = found

    # -- output ------------------------------------------------------------------------------

    @property
    def held(self) -> int:
        """Evaluations held for the trend features (bounded: older ones are dropped)."""
        return max(len(trend.steps) for trend in self._trends)

    @property
    def missing(self) -> tuple[str, ...]:
        """Key measures (:data:`KEY_MEASURES`) never seen so far."""
        return tuple(m for m in KEY_MEASURES if not self._seen[_COL[m]])

    def _compute(self, t: int) -> np.ndarray:
        seen, first, last = self._seen.tolist(), self._first.tolist(), self._last.tolist()
        top, bottom, at_mem = self._max.tolist(), self._min.tolist(), self._at_mem.tolist()
        trends = self._trends
        s = {}
        for j, name in enumerate(_MEASURES):
            k = _TREND_OF.get(j)
            trend = None if k is None else trends[k]
            s[name] = _Series(seen[j], first[j], last[j], (top[j], bottom[j]), at_mem[j], trend)
        t_mem = self.tracker.t_mem or 0
        mem = self.tracker.t_mem is not None
        acc, tr_acc = s["test_accuracy"], s["train_accuracy"]
        te_loss, tr_loss, wn = s["test_loss"], s["train_loss"], s["weight_norm"]
        test_acc = acc.last
        rise = math.nan
        if acc.seen:
            low = self._test_low
            rise = max(test_acc - low, 0.0) if math.isfinite(low) else 0.0
        acc_slope = acc.slope(t)
        accel = acc_slope - acc.slope(t, 1)
        budget_left = math.log(self.budget / t) if self.budget else math.nan
        margin = math.nan
        if acc.seen and math.isfinite(budget_left):
            to_go = max(self.rules.grok_threshold - test_acc, 0.0)
            needed = to_go / acc_slope if acc_slope > 1e-4 else 20.0
            margin = min(needed, 20.0) - budget_left
        cc = s["circuit_complexity_mean"]
        mc = s["mc_dropout_accuracy_var"]
        energy = s["loss_spectral_energy"]
        entropy = s["weight_entropy"]
        entropy_scale = max(abs(entropy.max), abs(entropy.min)) if entropy.seen else math.nan
        mc_mean = s["mc_dropout_accuracy_mean"].last
        feats = [
            float(mem),
            math.log(t / t_mem) if mem and t_mem > 0 else 0.0,
            budget_left,
            tr_acc.last,
            test_acc,
            rise,
            acc_slope,
            accel,
            margin,
            _log_ratio(te_loss.last, te_loss.max),
            _log_slope(te_loss, t),
            _log_slope(tr_loss, t),
            _log_ratio(tr_loss.last, tr_loss.first),
            _log_ratio(te_loss.last, tr_loss.last),
            _log_ratio(wn.last, wn.max),
            _log_slope(wn, t),
            _log_ratio(wn.last, wn.at_mem) if mem else 0.0,
            entropy.slope(t) / entropy_scale if entropy_scale and entropy_scale > 0 else math.nan,
            s["activation_sparsity"].last,
            s["activation_sparsity"].slope(t),
            s["spectral_entropy"].last,
            s["spectral_entropy"].slope(t),
            s["grad_weight_cosine"].last,
            _log_ratio(cc.last, cc.max),
            _log_slope(cc, t),
            mc.last / mc.max if mc.seen and mc.max > 0 else (0.0 if mc.seen else math.nan),
            _log(mc.last + 1e-6) / math.log(10.0) if mc.seen else math.nan,
            mc_mean - test_acc,
            s["softmax_collapse"].last,
            _log_ratio(energy.last, tr_loss.last * tr_loss.last) if energy.seen else math.nan,
            s["loss_hjorth_mobility"].last,
            s["fourier_gini"].last,
            s["fourier_gini"].slope(t),
            s["embedding_band_score"].last,
            s["embedding_bimodality"].last,
            _since(acc, mem),
            _log_since(te_loss, mem),
            _log_since(tr_loss, mem),
            _log_since(cc, mem),
            _since(s["spectral_entropy"], mem),
            _since(s["activation_sparsity"], mem),
            _since(s["fourier_gini"], mem),
        ]
        t_ref = t_mem if mem else t
        for m in ("test_accuracy", "test_loss", "weight_norm"):
            cp = self._last_cp.get(m)
            if cp is not None and cp.step < t_ref:
                cp = None
            since = math.log(t / max(cp.step if cp else t_ref, t_ref, 1))
            direction = 0.0 if cp is None else (1.0 if cp.direction is Direction.UP else -1.0)
            feats += [since, direction]
        n_since = sum(1 for cp in self.change_points if mem and cp.step >= t_mem)
        feats.append(float(n_since))
        return np.asarray(feats, dtype=float)


def _since(series: _Series, mem: bool) -> float:
    """Change of the measure since memorization (0 before it; NaN if never measured)."""
    if not series.seen:
        return math.nan
    return series.last - series.at_mem if mem and math.isfinite(series.at_mem) else 0.0


def _log_since(series: _Series, mem: bool) -> float:
    """``log(measure / measure at t_mem)`` (0 before memorization)."""
    if not series.seen:
        return math.nan
    return _log_ratio(series.last, series.at_mem) if mem else 0.0


def _log_slope(series: _Series, t: int) -> float:
    """Slope of ``log(measure)`` per log-step over ``[t / RATIO, t]``."""
    if not series.seen:
        return math.nan
    hi, lo = series.at(t), series.at(t / RATIO)
    if hi <= 0 or lo <= 0:
        return math.nan
    return (math.log(hi) - math.log(lo)) / _LN_RATIO


def run_features(
    steps: np.ndarray,
    columns: tuple[str, ...] | list[str],
    values: np.ndarray,
    *,
    budget: int | None = None,
    rules: EventRules | None = None,
    changepoints: str = "bayes",
) -> tuple[np.ndarray, FeatureState]:
    """Replay a whole run (``steps (T,)``, ``values (T, M)`` NaN = missing) through a
    :class:`FeatureState`; returns the features at every step, ``(T, F)``, and the state."""
    state = FeatureState(budget=budget, rules=rules, changepoints=changepoints)
    rows, absent = input_rows(columns, values)
    out = np.full((len(steps), len(FEATURE_NAMES)), np.nan)
    for i, step in enumerate(np.asarray(steps).tolist()):
        state.add_rows([int(step)], rows[i : i + 1], absent[i : i + 1])
        out[i] = state.vector()
    return out, state


def input_rows(columns: Sequence[str], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A run's value matrix ``(T, M)`` with named ``columns`` as :meth:`FeatureState.add_rows`
    takes it: every value of a column present is reported (NaN = measured, not finite)."""
    values = np.asarray(values, dtype=float)
    rows = np.full((values.shape[0], len(INPUT_COLUMNS)), np.nan)
    absent = np.ones(rows.shape, dtype=bool)
    for j, name in enumerate(columns):
        c = _COL.get(name)
        if c is not None:
            rows[:, c], absent[:, c] = values[:, j], False
    return rows, absent
