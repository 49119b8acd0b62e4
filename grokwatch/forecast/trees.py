"""Gradient-boosted trees as plain arrays: fitted by scikit-learn, predicted by numpy.

``GrokForecaster(classifier="trees")`` fits a ``HistGradientBoostingClassifier`` and keeps
only its trees, as padded arrays (one row per tree, one column per node): the split feature,
the raw threshold (``x <= threshold`` goes left), where NaN goes, the children, the leaf flag
and the leaf value (already multiplied by the learning rate), plus the baseline log-odds.
That is everything prediction needs, it saves as arrays (:mod:`.io`, no pickle), and numpy
walks all trees at once, one depth level per step.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

__all__ = ["TREE_ARRAYS", "TreeEnsemble", "fit_trees"]

_MAX_BINS = 63
"""Histogram bins per feature. With row weights scikit-learn finds bin edges one weighted
percentile at a time (~0.6 ms each, 254 per feature at the default 255 bins: ~8 s per fit
for our 49 features, whatever the data size); 63 bins cut that by 4."""

TREE_ARRAYS = ("feature", "threshold", "nan_left", "left", "right", "leaf", "value", "gain")


@dataclasses.dataclass
class TreeEnsemble:
    """A boosted ensemble of binary trees over raw feature values."""

    feature: np.ndarray  # (T, N) int64
    threshold: np.ndarray  # (T, N) float64
    nan_left: np.ndarray  # (T, N) bool
    left: np.ndarray  # (T, N) int64
    right: np.ndarray  # (T, N) int64
    leaf: np.ndarray  # (T, N) bool
    value: np.ndarray  # (T, N) float64
    gain: np.ndarray  # (T, N) float64
    baseline: float
    depth: int

    def decision(self, X: np.ndarray) -> np.ndarray:
        """Log-odds for each row of ``X`` ``(n, F)`` (NaN allowed)."""
        feature, threshold, nan_left, left, right, value = self._flat
        n, t = X.shape[0], self.feature.shape[0]
        rows = np.arange(n)[:, None]
        node = np.tile(np.arange(t) * self.feature.shape[1], (n, 1))  # every tree's root
        for _ in range(self.depth):
            x = X[rows, feature[node]]
            go_left = np.where(np.isnan(x), nan_left[node], x <= threshold[node])
            node = np.where(go_left, left[node], right[node])
        return np.asarray(self.baseline + value[node].sum(axis=1), dtype=float)

    @functools.cached_property
    def _flat(self) -> tuple[np.ndarray, ...]:
        """The node arrays flattened, children as flat indices, and every leaf its own two
        children: a walk of ``depth`` levels needs one gather per array and no leaf test."""
        t, width = self.feature.shape
        base = (np.arange(t) * width)[:, None]
        here = base + np.arange(width)[None, :]
        left = np.where(self.leaf, here, base + self.left).ravel()
        right = np.where(self.leaf, here, base + self.right).ravel()
        feature = np.where(self.leaf, 0, self.feature).ravel()
        return (feature, self.threshold.ravel(), self.nan_left.ravel(), left, right,
                self.value.ravel())  # fmt: skip

    def feature_gain(self, n_features: int) -> np.ndarray:
        """Each feature's share of the total split gain."""
        inner = ~self.leaf
        gains = np.bincount(
            self.feature[inner], weights=np.maximum(self.gain[inner], 0), minlength=n_features
        )[:n_features]
        total = gains.sum()
        return gains / total if total > 0 else np.full(n_features, 1.0 / max(n_features, 1))

    def to_arrays(self, prefix: str = "tree_") -> dict[str, np.ndarray]:
        out = {f"{prefix}{k}": np.asarray(getattr(self, k)) for k in TREE_ARRAYS}
        out[f"{prefix}meta"] = np.array([self.baseline, float(self.depth)])
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "tree_") -> TreeEnsemble:
        meta = arrays[f"{prefix}meta"]
        fields: dict[str, Any] = {k: arrays[f"{prefix}{k}"] for k in TREE_ARRAYS}
        return cls(**fields, baseline=float(meta[0]), depth=int(meta[1]))


def fit_trees(
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    *,
    max_iter: int,
    learning_rate: float,
    max_depth: int,
    min_samples_leaf: int,
    l2_regularization: float,
    regression: bool = False,
    random_state: int = 0,
) -> TreeEnsemble:
    """Fit ``HistGradientBoostingClassifier`` on binary ``y`` (0/1) -- or, with
    ``regression=True``, ``HistGradientBoostingRegressor`` (squared error) on real ``y`` --
    and export its trees (``decision`` then gives log-odds, or the prediction)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    kind = HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier
    clf = kind(
        max_iter=max_iter,
        learning_rate=learning_rate,
        max_leaf_nodes=None,
        max_depth=max_depth,
        min_samples_leaf=min_samples_leaf,
        l2_regularization=l2_regularization,
        early_stopping=False,
        max_bins=_MAX_BINS,
        random_state=random_state,
    )
    # a column that can never be split on -- no value at all (a measure no training run had),
    # or one value and no NaN -- changes no tree: leaving it out saves its histograms
    nan = np.isnan(X)
    lo = np.where(nan, np.inf, X).min(axis=0)
    hi = np.where(nan, -np.inf, X).max(axis=0)
    used = np.flatnonzero(~nan.all(axis=0) & ((hi > lo) | nan.any(axis=0)))
    if used.size == 0:  # nothing to split on: trees of one leaf
        used = np.array([0])
    clf.fit(np.nan_to_num(X[:, used], nan=0.0) if nan[:, used].all() else X[:, used], y,
            sample_weight=w)  # fmt: skip
    trees = [p[0].nodes for p in clf._predictors]
    t, n = len(trees), max((len(nodes) for nodes in trees), default=1)
    arr = {
        "feature": np.zeros((t, n), np.int64),
        "threshold": np.zeros((t, n)),
        "nan_left": np.zeros((t, n), bool),
        "left": np.zeros((t, n), np.int64),
        "right": np.zeros((t, n), np.int64),
        "leaf": np.ones((t, n), bool),
        "value": np.zeros((t, n)),
        "gain": np.zeros((t, n)),
    }
    depth = 1
    for i, nodes in enumerate(trees):
        k = len(nodes)
        arr["feature"][i, :k] = used[nodes["feature_idx"]]
        arr["threshold"][i, :k] = nodes["num_threshold"]
        arr["nan_left"][i, :k] = nodes["missing_go_to_left"].astype(bool)
        arr["left"][i, :k] = nodes["left"]
        arr["right"][i, :k] = nodes["right"]
        arr["leaf"][i, :k] = nodes["is_leaf"].astype(bool)
        arr["value"][i, :k] = nodes["value"]
        arr["gain"][i, :k] = np.where(nodes["is_leaf"], 0.0, nodes["gain"])
        depth = max(depth, int(nodes["depth"].max()) + 1)
    baseline = float(np.ravel(clf._baseline_prediction)[0])
    return TreeEnsemble(**arr, baseline=baseline, depth=depth)
