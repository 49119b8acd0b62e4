"""The transfer rules: the worst-family threshold,
family-balanced weights and interval quantiles, the default-grid replay, the v1 one-hot MLPs'
family; and fit_replays with them on small synthetic families."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _forecast_synth import make_corpus

from grokwatch.forecast import io as model_io
from grokwatch.forecast.evaluate import forecast_signal
from grokwatch.forecast.forecaster import RESIDUAL_QUANTILES
from grokwatch.forecast.replay import (
    NEGATIVE,
    architecture_family,
    choose_alert_threshold,
    replay,
    thin,
    with_family,
)
from grokwatch.forecast.training import alert_scores, eligible_max, fit_replays
from grokwatch.forecast.transfer import (
    balanced_quantiles,
    family_threshold,
    family_weights,
)

FAST = {"classifier": "gam", "time_model": "ridge"}


def test_family_threshold_keeps_the_budget_on_every_family():
    # a big family whose negatives stay low and a small one whose negatives run high
    neg = {"big": [0.1 + 0.001 * i for i in range(100)], "small": [0.5, 0.6, 0.7, 0.8]}
    pooled = choose_alert_threshold([v for vs in neg.values() for v in vs], 0.05)
    worst = family_threshold(neg, 0.05)
    assert worst == max(choose_alert_threshold(v, 0.05) for v in neg.values())
    for vs in neg.values():
        assert np.mean(np.array(vs) >= worst) <= 0.05
    assert np.mean(np.array(neg["small"]) >= pooled) > 0.05  # pooling lets it through
    assert family_threshold({"none": []}, 0.05) == 0.5


def test_family_weights_make_families_equal():
    fams = ["a"] * 6 + ["b"] * 2 + ["c"]
    w = family_weights(fams)
    assert w.mean() == pytest.approx(1.0)
    totals = {f: w[[i for i, g in enumerate(fams) if g == f]].sum() for f in "abc"}
    assert totals["a"] == pytest.approx(totals["b"]) == pytest.approx(totals["c"])
    assert family_weights([]).size == 0


def test_balanced_quantiles_weigh_a_small_family_as_much_as_a_big_one():
    res = [np.zeros(5)] * 30 + [np.ones(5)]  # 30 runs at 0, one run of family b at 1
    fams = ["a"] * 30 + ["b"]
    q = balanced_quantiles(res, fams, RESIDUAL_QUANTILES)
    assert np.interp(0.25, RESIDUAL_QUANTILES, q) == 0.0
    assert np.interp(0.75, RESIDUAL_QUANTILES, q) == 1.0
    with pytest.raises(ValueError, match="families"):
        balanced_quantiles(res, fams[:-1], RESIDUAL_QUANTILES)


def test_default_grid_keeps_every_50_below_1000_then_the_hundreds_then_the_thousands():
    steps = np.array([1, *range(50, 12001, 50)])
    kept = steps[thin(steps, "default")]
    assert kept[:3].tolist() == [1, 50, 100]
    assert set(range(50, 1000, 50)) <= set(kept.tolist())
    assert 1050 not in kept and 1100 in kept and 9900 in kept
    assert 10100 not in kept and 11000 in kept
    with pytest.raises(ValueError, match="cadence"):
        thin(steps, "weekly")


@pytest.fixture(scope="module")
def families():
    runs = make_corpus(10, seed=1, family="alpha") + make_corpus(10, seed=2, family="beta")
    runs += make_corpus(10, seed=3, family="gamma")
    return [replay(r) for r in runs]


def test_v1_mlps_without_embedding_are_held_out_with_onehot(families):
    run = make_corpus(1, seed=5, family="mlp")[0]
    assert architecture_family(run) == "mlp"
    run.config["embedding"] = False
    assert architecture_family(run) == "onehot"
    assert with_family(replay(run), run).family == "onehot"


def test_fit_with_transfer_rules_keeps_far_on_every_family(families, tmp_path):
    model, report = fit_replays(
        families, fold_by="family", C_grid=(1.0,), params=FAST, far=0.2,
        threshold_rule="family", balance="family", interval="balanced",
    )  # fmt: skip
    assert report.threshold_rule == "family"
    assert model.alert_threshold_ == max(report.family_thresholds.values())
    for fam in ("alpha", "beta", "gamma"):
        neg = [r for r in families if r.family == fam and r.outcome in NEGATIVE]
        alarms = [eligible_max(r, report.oof_forecasts[r.run_id]) for r in neg]
        assert np.mean(np.array(alarms) >= model.alert_threshold_) <= 0.2
    sig = forecast_signal(report.oof_forecasts, model.alert_threshold_)
    some = families[0]
    assert (
        sig.scores[some.run_id].tolist() == alert_scores(report.oof_forecasts[some.run_id]).tolist()
    )
    assert set(report.oof_residuals) <= {r.run_id for r in families if r.groks}
    path = model_io.save(model, tmp_path / "m.npz")
    with np.load(path) as z:  # a file of before, with the removed persistence rule's scalar
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    meta["scalars"]["persist_"] = 2
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez_compressed(path, **arrays)
    back = model_io.load(path)
    assert not hasattr(back, "persist_")
    assert back.alert_threshold_ == model.alert_threshold_


def test_hazard_interval_covers_80_percent_and_follows_the_spread():
    """u = log(t_grok / t) lognormal with a location set by x0 and a spread set by x1: the
    hazard model's 80 % interval covers about 80 % of fresh draws, and is narrower where the
    spread is small."""
    from grokwatch.forecast.hazard import HazardTime

    rng = np.random.default_rng(0)

    def draw(n):
        x = rng.uniform(0, 1, size=(n, 2))
        u = np.exp(rng.normal(np.log(0.5 + 2 * x[:, 0]), 0.1 + 0.4 * x[:, 1]))
        return x, u

    x, u = draw(4000)
    x = np.column_stack([x, np.full(len(u), np.nan)])  # a measure no run had
    hz = HazardTime(n_trees=60, min_samples_leaf=20).fit(x, u)
    xt, ut = draw(1500)
    xt = np.column_stack([xt, np.full(len(ut), np.nan)])
    q = hz.quantiles(xt, [0.1, 0.5, 0.9])
    assert (np.diff(q, axis=1) >= 0).all()
    coverage = np.mean((q[:, 0] <= ut) & (ut <= q[:, 2]))
    assert 0.72 <= coverage <= 0.9
    width = q[:, 2] - q[:, 0]
    assert width[xt[:, 1] < 0.3].mean() < 0.8 * width[xt[:, 1] > 0.7].mean()
    err = np.median(np.abs(q[:, 1] - ut) / ut)
    assert err < 0.6 * np.median(np.abs(np.median(u) - ut) / ut)  # the features locate u
    with pytest.raises(ValueError, match="not fitted"):
        HazardTime().hazards(xt)
