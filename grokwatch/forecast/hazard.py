"""A discrete-time hazard model of *when* a run groks: the distribution of ``log(t_grok / t)``.

:class:`~grokwatch.forecast.forecaster.GrokForecaster` gives ``t_grok``, its interval and
P(grok within the next H steps) from this model. The time still to go, ``u = log(t_grok / t)``
(log-steps, > 0 before ``t_grok``), is cut into ``bins`` bins of ``width``; for a row of
features ``x`` the model gives the hazard

    h_k(x) = P(u in bin k | u not in bins 0..k-1, x)

by a classifier of the *person-period* rows (Singer & Willett 1993): a row whose ``u`` falls
in bin ``j`` contributes the rows ``(x, k)`` for ``k = 0..j``, labelled 1 at ``k = j`` and 0
before (:func:`person_period`). The classifier is the forecaster's boosted trees with the bin
index as one more column, so the bin can interact with the features: the shape of the
distribution, not only its location, follows ``x``. The survival ``S(k) = prod_{i <= k} (1 -
h_i)`` gives the CDF at the bins' upper edges (:func:`cdf_of_logits`); quantiles and the CDF
between edges interpolate linearly within a bin; the last bin is open (every ``u`` beyond its
lower edge falls in it) and read as one more ``width``.

It replaced a time regression whose interval was the empirical distribution of its
residuals: the same width for every run, and 0.95-1.00 coverage of the nominal 80 % on the
families it never saw, against 0.62-0.93 for the hazard model (docs/evaluation.md).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "TIME_BINS",
    "TIME_BIN_WIDTH",
    "cdf_at",
    "cdf_of_logits",
    "edges",
    "periods",
    "person_period",
    "quantiles",
]

TIME_BIN_WIDTH = 0.25
"""Bin width in log-steps (a factor of 1.28 in steps)."""
TIME_BINS = 20
"""Bins: ``u`` up to 5 log-steps (a factor of 150 between ``t`` and ``t_grok``)."""


def edges(width: float, bins: int) -> np.ndarray:
    """``(bins + 1,)``: bin ``k`` spans ``edges[k]`` to ``edges[k + 1]``."""
    return np.arange(bins + 1) * float(width)


def person_period(
    X: np.ndarray, u: np.ndarray, w: np.ndarray, *, width: float, bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The classifier's rows: ``(X | k, y, w)`` for every row and every bin up to its own."""
    j = np.clip(np.floor(np.maximum(u, 0.0) / width), 0, bins - 1).astype(int)
    rows = np.repeat(np.arange(u.size), j + 1)
    k = np.arange(rows.size) - np.repeat(np.cumsum(j + 1) - (j + 1), j + 1)  # 0..j per row
    y = (k == j[rows]).astype(int)
    return np.column_stack([X[rows], k.astype(float)]), y, w[rows]


def periods(X: np.ndarray, bins: int) -> np.ndarray:
    """``(n * bins, F + 1)``: every row of ``X`` with every bin index (row-major)."""
    n = X.shape[0]
    k = np.tile(np.arange(bins, dtype=float), n)
    return np.column_stack([np.repeat(X, bins, axis=0), k])


def cdf_of_logits(z: np.ndarray) -> np.ndarray:
    """``(n, bins)`` CDF at the bins' upper edges from the hazards' log-odds ``z`` (the last
    bin's hazard is 1: the distribution ends there)."""
    h = 0.5 * (1.0 + np.tanh(0.5 * np.clip(z, -500, 500)))
    h[:, -1] = 1.0
    return np.asarray(1.0 - np.cumprod(1.0 - h, axis=1), dtype=float)


def _padded(F: np.ndarray) -> np.ndarray:
    """The CDF with 0 at the lower edge of bin 0, made strictly increasing (for ``interp``)."""
    cdf = np.concatenate([np.zeros((F.shape[0], 1)), F], axis=1)
    return np.asarray(np.maximum.accumulate(cdf, axis=1) + np.arange(cdf.shape[1]) * 1e-12)


def quantiles(F: np.ndarray, q: np.ndarray, width: float) -> np.ndarray:
    """``(n, len(q))`` quantiles of ``u`` for every row of the CDFs ``F`` (linear in a bin)."""
    e = edges(width, F.shape[1])
    cdf = _padded(F)
    qs = np.asarray(q, dtype=float).reshape(-1)
    return np.stack([np.interp(qs, c, e) for c in cdf])


def cdf_at(F: np.ndarray, r: np.ndarray, width: float) -> np.ndarray:
    """``(n,)``: P(u <= r[i]) for every row of the CDFs ``F`` (linear within a bin)."""
    e = edges(width, F.shape[1])
    cdf = _padded(F)
    r = np.broadcast_to(np.asarray(r, dtype=float), (F.shape[0],))
    out = np.array([float(np.interp(ri, e, c)) for ri, c in zip(r, cdf, strict=True)])
    return np.asarray(np.minimum(out, 1.0))  # the strictly-increasing nudge ends above 1
