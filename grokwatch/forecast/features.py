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
import math
from collections.abc import Mapping

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
    "INPUT_MEASURES",
    "KEY_MEASURES",
    "RATIO",
    "SCHEMA_VERSION",
    "FeatureState",
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

INPUT_MEASURES = frozenset({*_MEASURES, "train_loss_step", "circuit_complexity"})
"""Every key of an evaluation's values that :meth:`FeatureState.update` reads."""

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


class _Series:
    """One measure's finite values in step order, with running extremes.

    Only the points the trend features can still read are kept (those after
    ``t / RATIO**2``, plus the one before), so memory stays bounded on long runs.
    """

    __slots__ = ("at_mem", "first", "max", "min", "steps", "values")

    def __init__(self) -> None:
        self.steps = array.array("q")
        self.values = array.array("d")
        self.max = -math.inf
        self.min = math.inf
        self.first = math.nan
        self.at_mem = math.nan

    def add(self, step: int, value: float) -> None:
        if not self.steps:
            self.first = value
        self.steps.append(step)
        self.values.append(value)
        self.max = max(self.max, value)
        self.min = min(self.min, value)
        stale = bisect.bisect_left(self.steps, step / RATIO**2) - 1
        if stale >= _PRUNE_AT:
            del self.steps[:stale]
            del self.values[:stale]

    @property
    def last(self) -> float:
        return self.values[-1] if self.values else math.nan

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
        if not self.steps:
            return math.nan
        hi = t / RATIO**k
        return (self.at(hi) - self.at(hi / RATIO)) / _LN_RATIO


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


class FeatureState:
    """The features of one run, updated one evaluation at a time (see the module docstring).

    ``update(step, values)`` expects steps in increasing order (a step not larger than the
    last is ignored and returns the previous vector); ``values`` maps measure names (the
    agent's history keys) to floats. ``changepoints`` picks the change-point method feeding
    the features: ``"bayes"`` (default) or ``"kernel"``.
    """

    def __init__(
        self,
        *,
        budget: int | None = None,
        rules: EventRules | None = None,
        changepoints: str = "bayes",
    ) -> None:
        if budget is not None and budget < 1:
            raise ValueError(f"budget must be a positive int or None, got {budget=!r}")
        self.budget = budget
        self.rules = rules or EventRules()
        self.tracker = EventTracker(self.rules)
        self.series = {name: _Series() for name in _MEASURES}
        self.n_points = 0
        self.non_finite = 0
        self.last_step: int | None = None
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
        self.new_change_points = []
        if self.last_step is not None and step <= self.last_step:
            return
        self.last_step = step
        self.n_points += 1
        clean: dict[str, float] = {}
        for name, series in self.series.items():
            raw = values.get(name)
            if raw is None and name == "train_loss":
                raw = values.get("train_loss_step")
            if raw is None and name == "circuit_complexity_mean":
                raw = values.get("circuit_complexity")  # only ratios of it are used
            if raw is None:
                continue
            value = _as_float(raw)
            if not math.isfinite(value):
                self.non_finite += 1
                continue
            clean[name] = value
            series.add(step, value)
        had_mem = self.tracker.t_mem is not None
        loss = values.get("train_loss_step", values.get("train_loss"))
        self.tracker.update(
            step,
            train_acc=clean.get("train_accuracy"),
            test_acc=clean.get("test_accuracy"),
            train_loss=None if loss is None else _as_float(loss),  # non-finite: diverged
        )
        if not had_mem and self.tracker.t_mem is not None:
            for series in self.series.values():
                series.at_mem = series.last
        if self.tracker.t_mem is not None and "test_accuracy" in clean:
            self._test_low = min(self._test_low, clean["test_accuracy"])
        self._update_changepoints(step)
        self._vector = None

    def vector(self) -> np.ndarray:
        """The feature vector at the last step added (all NaN before the first)."""
        if self._vector is None:
            self._vector = self._compute(max(self.last_step or 0, 1))
        return self._vector.copy()

    def _update_changepoints(self, step: int) -> None:
        y = np.array(
            [
                _log(self.series[m].last) if m in _LOG_CP else self.series[m].last
                for m in CHANGEPOINT_MEASURES
            ]
        )
        obs = self._slopes.update(step, y)
        if obs is None:
            return
        step_cp, slopes = obs
        found = self._cpd.update(step_cp, np.clip(slopes, -_MAX_SLOPE, _MAX_SLOPE))
        for cp in found:
            self._last_cp[cp.measure] = cp
        self.change_points.extend(found)
        self.new_change_points = found

    # -- output ------------------------------------------------------------------------------

    @property
    def missing(self) -> tuple[str, ...]:
        """Key measures (:data:`KEY_MEASURES`) never seen so far."""
        return tuple(m for m in KEY_MEASURES if not self.series[m].steps)

    def _compute(self, t: int) -> np.ndarray:
        s = self.series
        t_mem = self.tracker.t_mem or 0
        mem = self.tracker.t_mem is not None
        acc, tr_acc = s["test_accuracy"], s["train_accuracy"]
        te_loss, tr_loss, wn = s["test_loss"], s["train_loss"], s["weight_norm"]
        test_acc = acc.last
        rise = math.nan
        if acc.steps:
            low = self._test_low
            rise = max(test_acc - low, 0.0) if math.isfinite(low) else 0.0
        acc_slope = acc.slope(t)
        accel = acc_slope - acc.slope(t, 1)
        budget_left = math.log(self.budget / t) if self.budget else math.nan
        margin = math.nan
        if acc.steps and math.isfinite(budget_left):
            to_go = max(self.rules.grok_threshold - test_acc, 0.0)
            needed = to_go / acc_slope if acc_slope > 1e-4 else 20.0
            margin = min(needed, 20.0) - budget_left
        cc = s["circuit_complexity_mean"]
        mc = s["mc_dropout_accuracy_var"]
        energy = s["loss_spectral_energy"]
        went = s["weight_entropy"]
        went_scale = max(abs(went.max), abs(went.min)) if went.steps else math.nan
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
            went.slope(t) / went_scale if went_scale and went_scale > 0 else math.nan,
            s["activation_sparsity"].last,
            s["activation_sparsity"].slope(t),
            s["spectral_entropy"].last,
            s["spectral_entropy"].slope(t),
            s["grad_weight_cosine"].last,
            _log_ratio(cc.last, cc.max),
            _log_slope(cc, t),
            mc.last / mc.max if mc.steps and mc.max > 0 else (0.0 if mc.steps else math.nan),
            _log(mc.last + 1e-6) / math.log(10.0) if mc.steps else math.nan,
            mc_mean - test_acc,
            s["softmax_collapse"].last,
            _log_ratio(energy.last, tr_loss.last * tr_loss.last) if energy.steps else math.nan,
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
    if not series.steps:
        return math.nan
    return series.last - series.at_mem if mem and math.isfinite(series.at_mem) else 0.0


def _log_since(series: _Series, mem: bool) -> float:
    """``log(measure / measure at t_mem)`` (0 before memorization)."""
    if not series.steps:
        return math.nan
    return _log_ratio(series.last, series.at_mem) if mem else 0.0


def _log_slope(series: _Series, t: int) -> float:
    """Slope of ``log(measure)`` per log-step over ``[t / RATIO, t]``."""
    if not series.steps:
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
    index = [(name, j) for j, name in enumerate(columns) if name in INPUT_MEASURES]
    out = np.full((len(steps), len(FEATURE_NAMES)), np.nan)
    for i, step in enumerate(steps):
        row = values[i]
        point = {name: float(row[j]) for name, j in index}
        out[i] = state.update(int(step), point)
    return out, state
