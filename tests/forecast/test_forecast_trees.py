"""The exported trees are scikit-learn's trees.

`grokwatch.forecast.trees.fit_trees` reads the fitted trees of scikit-learn's
HistGradientBoosting models from their private attributes (`_predictors`,
`_baseline_prediction`): scikit-learn has no public accessor for them, and the forecaster ships
them as plain arrays. If a scikit-learn release changes those attributes, these tests fail.
"""

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from grokwatch.forecast.trees import _MAX_BINS, fit_trees

PARAMS = {"max_iter": 30, "learning_rate": 0.1, "max_depth": 4, "min_samples_leaf": 5,
          "l2_regularization": 0.1}  # fmt: skip


def _data(regression: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 5))
    X[rng.random(X.shape) < 0.1] = np.nan  # missing values take the learned side
    signal = np.nan_to_num(X[:, 0]) - 0.5 * np.nan_to_num(X[:, 1]) ** 2
    y = signal + rng.normal(scale=0.3, size=600) if regression else (signal > 0).astype(float)
    return X, y, rng.uniform(0.5, 2.0, size=600)


@pytest.mark.parametrize("regression", [False, True])
def test_exported_trees_predict_what_scikit_learn_predicts(regression):
    X, y, w = _data(regression)
    ours = fit_trees(X, y, w, regression=regression, **PARAMS)
    kind = HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier
    ref = kind(max_leaf_nodes=None, early_stopping=False, max_bins=_MAX_BINS, random_state=0,
               **PARAMS).fit(X, y, sample_weight=w)  # fmt: skip
    want = ref.predict(X) if regression else ref.decision_function(X)
    np.testing.assert_allclose(ours.decision(X), want, rtol=1e-9, atol=1e-9)
    assert np.ptp(want) > 0.5  # the trees learned something: the comparison is not trivial
