"""A discrete-time hazard model of *when* a run groks: the distribution of ``log(t_grok / t)``.

The residual-quantile interval of :class:`~grokwatch.forecast.forecaster.GrokForecaster` has
the same width for every run: a run whose features say "soon, surely" gets the interval of a
run whose features say "some time, maybe". A hazard model lets the features shape the whole
distribution. The time still to go, ``u = log(t_grok / t)`` (log-steps), is cut into bins of
``width``; for a row of features ``x`` the model gives the hazard

    h_k(x) = P(u in bin k | u not in bins 0..k-1, x)

by a classifier of the *person-period* rows (Singer & Willett 1993): a row whose ``u`` falls
in bin ``j`` contributes the rows ``(x, k)`` for ``k = 0..j``, labelled 1 at ``k = j`` and 0
before. The survival ``S(k) = prod_{i <= k} (1 - h_i)`` gives the CDF; quantiles interpolate
linearly within a bin; the last bin is open and read as one more ``width``. The classifier is
scikit-learn's ``HistGradientBoostingClassifier`` (NaN features allowed), so the bin index can
interact with the features: the shape, not only the location, follows ``x``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["HazardTime"]


class HazardTime:
    """Discrete-time hazard model of ``u = log(t_grok / t)``.

    ``width``: bin width in log-steps; ``n_bins``: bins (the last is open: ``u`` beyond
    ``(n_bins - 1) * width`` falls in it); tree settings as in :mod:`.trees`.
    """

    def __init__(
        self,
        *,
        width: float = 0.25,
        n_bins: int = 20,
        n_trees: int = 100,
        learning_rate: float = 0.1,
        max_depth: int = 4,
        min_samples_leaf: int = 50,
        random_state: int = 0,
    ) -> None:
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width=!r}")
        if not (isinstance(n_bins, int) and n_bins >= 2):
            raise ValueError(f"n_bins must be an int >= 2, got {n_bins=!r}")
        self.width = float(width)
        self.n_bins = n_bins
        self.params = {
            "max_iter": n_trees,
            "learning_rate": learning_rate,
            "max_depth": max_depth,
            "min_samples_leaf": min_samples_leaf,
            "random_state": random_state,
        }
        self.clf_: Any = None
        self.columns_ = np.zeros(0, dtype=int)

    def _bin(self, u: np.ndarray) -> np.ndarray:
        j = np.clip(np.floor(np.maximum(u, 0.0) / self.width), 0, self.n_bins - 1)
        return np.asarray(j, dtype=int)

    def fit(self, X: Any, u: Any, sample_weight: Any = None) -> HazardTime:
        """Fit on feature rows ``X`` and their ``u = log(t_grok / t)`` (rows with a non-finite
        ``u`` are left out); ``sample_weight`` per row."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        X = np.asarray(X, dtype=float)
        u = np.asarray(u, dtype=float).reshape(-1)
        w = np.ones(u.size) if sample_weight is None else np.asarray(sample_weight, float)
        if X.shape[0] != u.size or w.size != u.size:
            raise ValueError(f"X has {X.shape[0]} rows, u {u.size}, sample_weight {w.size}")
        ok = np.isfinite(u) & (w > 0)
        X, u, w = X[ok], u[ok], w[ok]
        if u.size < 2:
            raise ValueError("a hazard model needs >= 2 rows with a finite time to go")
        # columns without a value (a measure no training run had) cannot be binned: left out
        self.columns_ = np.flatnonzero(~np.isnan(X).all(axis=0))
        X = X[:, self.columns_]
        j = self._bin(u)
        rows = np.repeat(np.arange(u.size), j + 1)  # person-period rows
        k = np.concatenate([np.arange(n + 1) for n in j])
        y = (k == j[rows]).astype(int)
        if y.min() == y.max():
            y[0] = 1 - y[0]  # one class only: a degenerate but valid fit
        clf = HistGradientBoostingClassifier(early_stopping=False, max_bins=63, **self.params)
        clf.fit(np.column_stack([X[rows], k]), y, sample_weight=w[rows])
        self.clf_ = clf
        return self

    def hazards(self, X: Any) -> np.ndarray:
        """``(n, n_bins)``: the hazard of every bin for every row (the last bin's is 1)."""
        if self.clf_ is None:
            raise ValueError("HazardTime is not fitted")
        X = np.asarray(X, dtype=float)[:, self.columns_]
        n = X.shape[0]
        k = np.tile(np.arange(self.n_bins), n)
        p = self.clf_.predict_proba(np.column_stack([np.repeat(X, self.n_bins, axis=0), k]))[:, 1]
        h = p.reshape(n, self.n_bins)
        h[:, -1] = 1.0  # the open last bin ends the distribution
        return np.asarray(h, dtype=float)

    def cdf(self, X: Any) -> np.ndarray:
        """``(n, n_bins)``: P(u < upper edge of bin k) for every row."""
        h = self.hazards(X)
        return np.asarray(1.0 - np.cumprod(1.0 - h, axis=1), dtype=float)

    def quantiles(self, X: Any, q: Any) -> np.ndarray:
        """``(n, len(q))``: quantiles of ``u`` for every row (linear within a bin)."""
        F = self.cdf(X)
        qs = np.asarray(q, dtype=float).reshape(-1)
        edges = np.arange(self.n_bins + 1) * self.width  # bin k spans edges[k]..edges[k+1]
        out = np.empty((F.shape[0], qs.size))
        for i in range(F.shape[0]):
            cdf = np.concatenate([[0.0], F[i]])
            cdf = np.maximum.accumulate(cdf) + np.arange(cdf.size) * 1e-12  # strictly up
            out[i] = np.interp(qs, cdf, edges)
        return out
