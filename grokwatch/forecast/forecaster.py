"""`GrokForecaster`: will this run grok within its budget, and when?

A scikit-learn classifier over the features of :mod:`grokwatch.forecast.features` (one row
per run and evaluation step, ``y`` = "the run reaches ``t_grok`` within its budget"), plus a
time model for the runs that do:

1. P(grok within budget) comes from gradient-boosted trees (``classifier="trees"``, the
   default: scikit-learn's ``HistGradientBoostingClassifier``, depth ``max_depth``, leaf L2
   penalty ``1 / C``, exported to arrays by :mod:`.trees`; NaN features -- measures a run
   does not have -- go down the branch the training data sent them) or from a logistic
   regression on a linear-spline basis (``classifier="gam"``, penalty ``C``): every feature
   centred on its weighted median, divided by its interquartile range, NaN -> 0, and
   expanded into ``[z, max(0, z - k1), ..., max(0, z - kK)]`` with knots at its training
   quantiles.
2. A discrete-time hazard model (:mod:`.hazard`) of ``u = log(t_grok / t)``, fitted on the
   rows of runs that grok and without the features listed out of ``time_features``: boosted
   trees (the classifier's tree settings) of the hazard of each of ``time_bins`` bins of
   ``time_bin_width`` log-steps, with the bin index as one more column. Its CDF gives the
   median ``t_grok``, the ``interval`` band and ``P(grok within H) = P(grok within budget) *
   P(u <= log(1 + H / t))``; the band's width follows the features.

Only plain arrays are fitted, so the model saves as arrays + JSON (:mod:`.io`) and predicts
one row in tens of µs with numpy (:meth:`GrokForecaster.predict_row`), which the online path
uses.

sklearn conventions: keyword hyperparameters stored unmodified, ``fit`` returns ``self``,
fitted state ends in ``_``, ``sklearn.utils.estimator_checks`` pass (binary only: the
``multi_class`` tag is off; NaN allowed: the ``allow_nan`` tag is on) -- with ``"gam"`` all of
them; with ``"trees"`` all but ``check_sample_weight_equivalence_on_dense_data``, which
scikit-learn's own ``HistGradientBoostingClassifier`` fails too (binning and
``min_samples_leaf`` count rows, not weight). ``alert_threshold_`` and ``hopeless_threshold_``
default to 0.5 and 0.05 after ``fit``;
:func:`grokwatch.forecast.training.fit_corpus` replaces
them by values chosen on out-of-fold validation runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from grokwatch.events import EventRules, EventTracker
from grokwatch.forecast import hazard
from grokwatch.forecast.online import GrokRunForecaster, RowPrediction
from grokwatch.forecast.trees import TreeEnsemble, fit_trees

__all__ = ["DEFAULT_HORIZON", "GrokForecaster", "weighted_quantile"]

DEFAULT_HORIZON = 1000
"""H, in steps, of ``p_grok_horizon``: P(t_grok within the next 1000 steps). 1000 steps is
about the median grokking gap of the training corpus, and 4 evaluations at the agent's
default cadence. Any H can be asked for at prediction time without refitting."""


def weighted_quantile(x: np.ndarray, w: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Inverted-CDF weighted quantiles of ``x`` (integer weights act as repetitions)."""
    keep = w > 0
    x, w = x[keep], w[keep]
    if x.size == 0:
        return np.zeros_like(q, dtype=float)
    order = np.argsort(x, kind="stable")
    x, cw = x[order], np.cumsum(w[order])
    idx = np.searchsorted(cw, q * cw[-1] - 1e-9 * cw[-1], side="left")
    return np.asarray(x[np.clip(idx, 0, x.size - 1)], dtype=float)


class GrokForecaster(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Forecasts grokking from the causal features of a run (see the module docstring).

    Parameters
    ----------
    C:
        Inverse L2 penalty: of the logistic regression (``"gam"``), of the leaf values
        (``"trees"``: ``l2_regularization = 1 / C``).
    knots:
        Hinge knots per feature (at the training quantiles ``1/(K+1) ... K/(K+1)``).
    horizon:
        Default H of :meth:`predict_horizon_proba` (steps).
    interval:
        Central coverage of the ``t_grok`` interval (0.8 -> 10th to 90th percentile).
    max_iter:
        Iterations of the logistic regression's L-BFGS solver.
    time_features:
        Column indices the time model may use (``None``: all). ``grokwatch fit`` leaves out
        the budget features: when a run groks does not depend on its budget.
    time_bins, time_bin_width:
        The hazard model's bins of ``log(t_grok / t)`` (the last one open).
    classifier:
        ``"gam"`` (the logistic regression on the spline basis) or ``"trees"`` (gradient-boosted
        trees, :mod:`.trees`, with ``n_trees``, ``learning_rate``, ``max_depth``,
        ``min_samples_leaf`` and an L2 leaf penalty of ``1 / C``).
    """

    def __init__(
        self,
        *,
        C: float = 0.1,
        knots: int = 3,
        horizon: int = DEFAULT_HORIZON,
        interval: float = 0.8,
        max_iter: int = 2000,
        time_features: Sequence[int] | None = None,
        classifier: str = "trees",
        n_trees: int = 200,
        learning_rate: float = 0.05,
        max_depth: int = 4,
        min_samples_leaf: int = 50,
        time_bins: int = hazard.TIME_BINS,
        time_bin_width: float = hazard.TIME_BIN_WIDTH,
    ) -> None:
        self.C = C
        self.knots = knots
        self.horizon = horizon
        self.interval = interval
        self.max_iter = max_iter
        self.time_features = time_features
        self.classifier = classifier
        self.n_trees = n_trees
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.time_bins = time_bins
        self.time_bin_width = time_bin_width

    def _fit_trees(self, X: np.ndarray, y: np.ndarray, w: np.ndarray) -> TreeEnsemble:
        """Boosted trees with this model's settings: the classifier and the hazard model share
        them."""
        return fit_trees(
            X,
            y,
            w,
            max_iter=self.n_trees,
            learning_rate=self.learning_rate,
            max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=1.0 / self.C,
        )

    # -- sklearn -----------------------------------------------------------------------------

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        return tags

    def fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any = None,
        *,
        log_time_to_grok: Any = None,
    ) -> GrokForecaster:
        """Fit on feature rows ``X``, binary ``y`` (groks within budget), optional row
        weights and, for the time model, ``log(t_grok / t)`` per row (NaN where the run does
        not grok; without it the forecaster gives no ``t_grok``)."""
        self._check_params()
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=np.float64)
        check_classification_targets(y)
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        if y_type != "binary":
            raise ValueError(
                "Only binary classification is supported (y = grokked within budget). "
                f"The type of the target is {y_type}."
            )
        self.classes_ = np.unique(y)
        n = X.shape[0]
        w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        if w.shape != (n,):
            raise ValueError(f"sample_weight must have shape ({n},), got {w.shape}")
        with threadpool_limits(limits=1):  # tiny BLAS problems: threads only contend
            return self._fit(X.copy(), y, w, log_time_to_grok)

    def _fit(
        self, X: np.ndarray, y: np.ndarray, w: np.ndarray, log_time_to_grok: Any
    ) -> GrokForecaster:
        n = X.shape[0]
        self._fit_basis(X, w)
        self.time_mask_ = np.ones(X.shape[1], dtype=bool)
        if self.time_features is not None:
            self.time_mask_[:] = False
            self.time_mask_[np.asarray(list(self.time_features), dtype=int)] = True
        B = self._basis(X)
        self.trees_: TreeEnsemble | None = None
        if self.classifier == "trees":
            y01 = (y == self.classes_[-1]).astype(int)
            if self.classes_.size < 2:
                raise ValueError("y has only one class; need runs that grok and runs that do not")
            self.trees_ = self._fit_trees(X, y01, w)
            self.coef_ = np.zeros(B.shape[1])
            self.intercept_ = 0.0
            self.n_iter_ = self.n_trees
            self.feature_weight_ = self.trees_.feature_gain(X.shape[1])
        else:
            clf = LogisticRegression(C=self.C, max_iter=self.max_iter)
            clf.fit(B, y, sample_weight=w)
            self.coef_ = clf.coef_.ravel().astype(float)
            self.intercept_ = float(clf.intercept_[0])
            self.n_iter_ = int(np.max(clf.n_iter_))
            self.feature_weight_ = self._feature_weights(B)
        self.time_trees_: TreeEnsemble | None = None
        if log_time_to_grok is not None:
            target = np.asarray(log_time_to_grok, dtype=float).reshape(-1)
            if target.shape != (n,):
                raise ValueError(f"log_time_to_grok must have shape ({n},), got {target.shape}")
            rows = np.isfinite(target) & (w > 0)
            if rows.sum() >= 2:
                Xp, yp, wp = hazard.person_period(
                    np.where(self.time_mask_, X, np.nan)[rows],
                    target[rows],
                    w[rows],
                    width=self.time_bin_width,
                    bins=self.time_bins,
                )
                if yp.min() == yp.max():
                    yp[0] = 1 - yp[0]  # one class only: a degenerate but valid fit
                self.time_trees_ = self._fit_trees(Xp, yp, wp)
        self.alert_threshold_ = 0.5
        self.hopeless_threshold_ = 0.05
        self.calibration_ = np.zeros((2, 0))
        return self

    def _check_params(self) -> None:
        if not (isinstance(self.C, int | float) and self.C > 0):
            raise ValueError(f"C must be > 0, got C={self.C!r}")
        if not (isinstance(self.knots, int) and self.knots >= 0):
            raise ValueError(f"knots must be an int >= 0, got knots={self.knots!r}")
        if not (isinstance(self.horizon, int) and self.horizon >= 1):
            raise ValueError(f"horizon must be an int >= 1, got horizon={self.horizon!r}")
        if not 0.0 < self.interval < 1.0:
            raise ValueError(f"interval must be in (0, 1), got interval={self.interval!r}")
        if not (isinstance(self.time_bins, int) and self.time_bins >= 2):
            raise ValueError(f"time_bins must be an int >= 2, got {self.time_bins=!r}")
        if not (isinstance(self.time_bin_width, int | float) and self.time_bin_width > 0):
            raise ValueError(f"time_bin_width must be > 0, got {self.time_bin_width=!r}")
        if self.classifier not in ("gam", "trees"):
            raise ValueError(f"classifier must be 'gam' or 'trees', got {self.classifier=!r}")
        for name in ("n_trees", "max_depth", "min_samples_leaf"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be an int >= 1, got {name}={value!r}")
        if not 0.0 < self.learning_rate <= 1.0:
            raise ValueError(f"learning_rate must be in (0, 1], got {self.learning_rate=!r}")

    def _fit_basis(self, X: np.ndarray, w: np.ndarray) -> None:
        f = X.shape[1]
        center = np.zeros(f)
        scale = np.ones(f)
        knots = np.zeros((f, self.knots))
        qs = np.arange(1, self.knots + 1) / (self.knots + 1)
        for j in range(f):
            col = X[:, j]
            ok = np.isfinite(col)
            if not ok.any():
                continue
            q25, q50, q75 = weighted_quantile(col[ok], w[ok], np.array([0.25, 0.5, 0.75]))
            center[j] = q50
            iqr = q75 - q25
            if not iqr > 1e-12:
                iqr = float(np.std(col[ok])) or 1.0
            scale[j] = iqr
            z = (col[ok] - q50) / iqr
            knots[j] = weighted_quantile(z, w[ok], qs) if self.knots else knots[j]
        self.center_ = center
        self.scale_ = scale
        self.knots_ = knots

    def _basis(self, X: np.ndarray) -> np.ndarray:
        z = (X - self.center_) / self.scale_
        z = np.where(np.isfinite(z), z, 0.0)  # NaN -> the median; +-inf clipped below
        z = np.clip(z, -50.0, 50.0)
        hinges = np.maximum(z[:, :, None] - self.knots_[None, :, :], 0.0)  # (n, F, K)
        return np.concatenate([z[:, :, None], hinges], axis=2).reshape(X.shape[0], -1)

    def _feature_weights(self, B: np.ndarray) -> np.ndarray:
        """Each feature's share of the decision function's spread (for confidence)."""
        k = self.knots + 1
        contrib = B * self.coef_  # (n, F*k)
        per_feature = contrib.reshape(B.shape[0], -1, k).sum(axis=2)
        spread = per_feature.std(axis=0) if B.shape[0] > 1 else np.abs(per_feature[0])
        total = spread.sum()
        if not total > 0:
            return np.full(per_feature.shape[1], 1.0 / max(per_feature.shape[1], 1))
        return np.asarray(spread / total, dtype=float)

    def decision_function(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)
        return self._decision(X)

    def _decision(self, X: np.ndarray) -> np.ndarray:
        if self.trees_ is not None:
            return self.trees_.decision(np.clip(X, -1e300, 1e300))
        return np.asarray(self._basis(X) @ self.coef_ + self.intercept_, dtype=float)

    def predict_proba(self, X: Any) -> np.ndarray:
        """``(n, 2)``: P(not grok within budget), P(grok within budget)."""
        p = self.recalibrate(_sigmoid(self.decision_function(X)))
        return np.stack([1.0 - p, p], axis=1)

    def recalibrate(self, p: np.ndarray) -> np.ndarray:
        """The probabilities of the trees (or the GAM) through ``calibration_``: a monotone
        map given by its knots (``(2, K)``: raw, calibrated; linear between them, constant
        beyond), fitted on out-of-fold forecasts by
        :func:`~grokwatch.forecast.training.fit_replays` (``calibrate="isotonic"``); the
        identity while it has fewer than 2 knots (``fit`` leaves it so)."""
        knots = getattr(self, "calibration_", None)
        if knots is None or knots.shape[1] < 2:
            return p
        return np.asarray(np.interp(p, knots[0], knots[1]), dtype=float)

    def predict(self, X: Any) -> np.ndarray:
        p = self.predict_proba(X)[:, 1]
        if self.classes_.size == 1:
            return np.full(p.shape, self.classes_[0])
        return np.asarray(self.classes_[(p >= 0.5).astype(int)])

    # -- time and horizon --------------------------------------------------------------------

    def predict_time_cdf(self, X: Any) -> np.ndarray:
        """``(n, time_bins)``: P(``log(t_grok / t)`` <= the upper edge of each bin) for each row
        (NaN without a time model)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)
        return self._time_cdf(X)

    def _time_cdf(self, X: np.ndarray) -> np.ndarray:
        trees = self.time_trees_
        if trees is None:
            return np.full((X.shape[0], self.time_bins), np.nan)
        Xt = np.where(self.time_mask_, np.clip(X, -1e300, 1e300), np.nan)
        z = trees.decision(hazard.periods(Xt, self.time_bins))
        return hazard.cdf_of_logits(z.reshape(X.shape[0], self.time_bins))

    def _levels(self) -> np.ndarray:
        """The median and the ends of the ``interval`` band."""
        return np.array([0.5, (1 - self.interval) / 2, 1 - (1 - self.interval) / 2])

    def predict_log_time(self, X: Any) -> np.ndarray:
        """Median ``log(t_grok / t)`` for each row (NaN without a time model)."""
        F = self.predict_time_cdf(X)
        if self.time_trees_ is None:
            return np.full(F.shape[0], np.nan)
        return hazard.quantiles(F, np.array([0.5]), self.time_bin_width)[:, 0]

    def predict_time(self, X: Any, steps: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(t_grok, low, high)`` per row: the median estimate and the ``interval`` band,
        given each row's step ``t``."""
        t = np.maximum(np.asarray(steps, dtype=float).reshape(-1), 1.0)
        F = self.predict_time_cdf(X)
        if self.time_trees_ is None:
            nan = np.full(F.shape[0], np.nan)
            return nan, nan, nan
        u = hazard.quantiles(F, self._levels(), self.time_bin_width)
        return t * np.exp(u[:, 0]), t * np.exp(u[:, 1]), t * np.exp(u[:, 2])

    def predict_horizon_proba(self, X: Any, steps: Any, horizon: int | None = None) -> np.ndarray:
        """P(t_grok within the next ``horizon`` steps) per row."""
        h = self.horizon if horizon is None else horizon
        t = np.maximum(np.asarray(steps, dtype=float).reshape(-1), 1.0)
        p = self.predict_proba(X)[:, 1]
        F = self.predict_time_cdf(X)
        if self.time_trees_ is None:
            return np.full(p.shape, np.nan)
        return np.asarray(p * hazard.cdf_at(F, np.log1p(h / t), self.time_bin_width), float)

    # -- one row, fast (the online path) ------------------------------------------------------

    def predict_row(self, x: np.ndarray, step: int, horizon: int | None = None) -> RowPrediction:
        """Everything for one feature vector at ``step``, with numpy only (no validation):
        the numbers of the array methods for ``x[None, :]`` (the times to the last digit or
        so: ``math.exp`` here, ``np.exp`` there)."""
        clipped = np.clip(x, -1e300, 1e300)  # what the trees read (see _decision)
        if self.trees_ is not None:
            z = float(self.trees_.decision(clipped[None, :])[0])
        else:
            z = float(self._decision(x[None, :])[0])
        p = float(self.recalibrate(_sigmoid(np.array([z])))[0])
        out = RowPrediction(p_budget=p)
        if self.time_trees_ is not None:
            F = self._time_cdf(x[None, :])
            mid, lo, hi = hazard.quantiles(F, self._levels(), self.time_bin_width)[0]
            t = max(float(step), 1.0)
            out.t_grok = t * math.exp(mid)
            out.t_low = t * math.exp(lo)
            out.t_high = t * math.exp(hi)
            h = self.horizon if horizon is None else horizon
            out.p_horizon = p * float(hazard.cdf_at(F, np.log1p(h / t), self.time_bin_width)[0])
        return out

    def get_thresholds(self) -> Mapping[str, float]:
        check_is_fitted(self)
        return {"alert": self.alert_threshold_, "hopeless": self.hopeless_threshold_}

    # -- online ------------------------------------------------------------------------------

    def start(
        self,
        *,
        budget: int | None,
        rules: EventRules | None = None,
        tracker: EventTracker | None = None,
    ) -> GrokRunForecaster:
        """Open one run's online forecasting state (the detector's entry point; ``tracker``:
        see :class:`~grokwatch.forecast.online.Forecaster`)."""
        check_is_fitted(self)
        return GrokRunForecaster(self, budget=budget, rules=rules, tracker=tracker)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * np.clip(z, -500, 500))), dtype=float)
