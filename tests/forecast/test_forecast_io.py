"""Model files: round trip, no pickle, clear errors on schema mismatch; the shipped model."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from grokwatch.exceptions import SchemaError
from grokwatch.forecast import io as model_io
from grokwatch.forecast.features import FEATURE_NAMES, SCHEMA_VERSION
from grokwatch.forecast.forecaster import GrokForecaster


@pytest.fixture
def fitted():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, len(FEATURE_NAMES)))
    X[::7, 3] = np.nan
    y = (X[:, 0] + rng.normal(0, 0.5, 300) > 0).astype(int)
    t = np.where(y == 1, 1 + 0.2 * X[:, 1], np.nan)
    est = GrokForecaster(classifier="gam", C=0.2, horizon=700).fit(X, y, log_time_to_grok=t)
    est.alert_threshold_, est.hopeless_threshold_ = 0.8, 0.02
    return est, X


def test_round_trip_gives_identical_predictions_and_state(tmp_path, fitted):
    est, X = fitted
    path = model_io.save(est, tmp_path / "m.npz", report={"note": "x"})
    back = model_io.load(path)
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
    np.testing.assert_array_equal(back.predict_log_time(X), est.predict_log_time(X))
    assert back.get_params() == est.get_params()
    assert (back.alert_threshold_, back.hopeless_threshold_) == (0.8, 0.02)
    assert back.fit_report_ == {"note": "x"}
    row_a, row_b = est.predict_row(X[5], 900), back.predict_row(X[5], 900)
    assert (row_a.p_budget, row_a.t_grok) == (row_b.p_budget, row_b.t_grok)
    assert row_a.t_grok is not None and (row_a.t_low, row_a.t_high) == (row_b.t_low, row_b.t_high)


def test_round_trip_of_the_tree_classifier(tmp_path, fitted):
    _, X = fitted
    y = (X[:, 0] + np.nan_to_num(X[:, 3]) > 0).astype(int)
    t = np.where(y == 1, 1 + 0.2 * X[:, 1], np.nan)
    est = GrokForecaster(n_trees=30, min_samples_leaf=5).fit(X, y, log_time_to_grok=t)
    assert est.trees_ is not None and est.time_trees_ is not None
    back = model_io.load(model_io.save(est, tmp_path / "t.npz"))
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
    np.testing.assert_array_equal(back.predict_log_time(X), est.predict_log_time(X))
    np.testing.assert_array_equal(back.feature_weight_, est.feature_weight_)


def test_round_trip_without_time_model(tmp_path, fitted):
    _, X = fitted
    est = GrokForecaster(classifier="gam").fit(X, (X[:, 0] > 0).astype(int))
    back = model_io.load(model_io.save(est, tmp_path / "m.npz"))
    assert back.time_trees_ is None and back.predict_row(X[0], 100).t_grok is None


def _rewrite_meta(path, change):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    change(meta)
    arrays["meta"] = np.array(json.dumps(meta))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def test_a_file_saved_with_the_removed_monotone_setting_still_loads(tmp_path, fitted):
    """Files saved before 110b577 (the shipped model, the committed fold models) carry the
    removed fitting setting ``monotone`` in their params; it is dropped, the trees predict as
    saved."""
    _, X = fitted
    y = (X[:, 0] > 0).astype(int)
    est = GrokForecaster(n_trees=20, min_samples_leaf=5).fit(X, y)
    for value in (None, {"test_accuracy": 1}):
        path = model_io.save(est, tmp_path / "m.npz")
        _rewrite_meta(path, lambda m, v=value: m["params"].update(monotone=v))
        back = model_io.load(path)
        assert "monotone" not in back.get_params()
        np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))


def test_a_model_of_another_feature_schema_is_refused_clearly(tmp_path, fitted):
    est, _ = fitted
    path = model_io.save(est, tmp_path / "m.npz")

    def older(meta):
        meta["feature_schema"]["version"] = SCHEMA_VERSION - 1
        meta["feature_schema"]["names"][0] = "retired_feature"

    _rewrite_meta(path, older)
    with pytest.raises(SchemaError, match=r"feature schema .*retired_feature.*grokwatch fit"):
        model_io.load(path)


def test_reordered_features_are_refused(tmp_path, fitted):
    est, _ = fitted
    path = model_io.save(est, tmp_path / "m.npz")
    _rewrite_meta(path, lambda m: m["feature_schema"]["names"].reverse())
    with pytest.raises(SchemaError, match="order differs"):
        model_io.load(path)


def test_other_files_are_refused_and_pickles_never_load(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(SchemaError, match="not a readable"):
        model_io.load(junk)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, meta=np.array([{"format": "grokwatch-forecaster"}], dtype=object))
    with pytest.raises(SchemaError, match="not a readable"):
        model_io.load(pickled)
    other = tmp_path / "other.npz"
    np.savez(other, meta=np.array(json.dumps({"format": "something-else"})))
    with pytest.raises(SchemaError, match="format is 'something-else'"):
        model_io.load(other)


def test_unfitted_or_foreign_models_are_not_saved(tmp_path):
    with pytest.raises(ValueError, match="fitted"):
        model_io.save(GrokForecaster(), tmp_path / "m.npz")
    small = GrokForecaster(classifier="gam").fit(np.eye(4), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="feature schema"):
        model_io.save(small, tmp_path / "m.npz")


def test_the_shipped_model_loads_and_matches_this_schema():
    model = model_io.load_default()
    assert model.n_features_in_ == len(FEATURE_NAMES)
    assert 0.0 <= model.hopeless_threshold_ <= model.alert_threshold_ <= 1.0
    assert model.time_trees_ is not None
    assert model_io.load_default() is model  # loaded once per process
