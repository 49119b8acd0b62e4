"""The transfer rules: the worst- and median-family thresholds,
family-balanced weights, the default-grid replay, the v1 one-hot MLPs'
family; and fit_replays with them on small synthetic families."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from _forecast_synth import make_corpus

from grokwatch.forecast import io as model_io
from grokwatch.forecast.evaluate import forecast_signal
from grokwatch.forecast.replay import (
    NEGATIVE,
    AgentCosts,
    architecture_family,
    choose_alert_threshold,
    replay,
    thin,
    with_family,
)
from grokwatch.forecast.training import alert_scores, eligible_max, fit_replays
from grokwatch.forecast.transfer import (
    family_threshold,
    family_weights,
    median_threshold,
    rule_threshold,
    threshold_from_report,
)

FAST = {"classifier": "gam", "n_trees": 10}


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


def test_median_threshold_is_the_median_family_s_own():
    neg = {
        "low": [0.1 + 0.001 * i for i in range(100)],
        "mid": [0.3 + 0.01 * i for i in range(40)],
        "high": [0.5, 0.6, 0.7, 0.8],
    }
    own = sorted(choose_alert_threshold(v, 0.05) for v in neg.values())
    assert median_threshold(neg, 0.05) == own[1]
    assert rule_threshold("median", neg, 0.05) == own[1]
    assert rule_threshold("family", neg, 0.05) == own[2] == family_threshold(neg, 0.05)
    pooled = choose_alert_threshold([v for vs in neg.values() for v in vs], 0.05)
    assert rule_threshold("pooled", neg, 0.05) == pooled
    assert median_threshold({"none": []}, 0.05) == 0.5
    with pytest.raises(ValueError, match="rule"):
        rule_threshold("mean", neg, 0.05)


def test_threshold_from_report_gives_what_the_fit_would():
    report = {
        "threshold_rule": "pooled",
        "alert_threshold": 0.97,
        "family_thresholds": {"a": 0.9, "b": 0.95, "c": 0.99},
    }
    assert threshold_from_report(report, "pooled") == 0.97
    assert threshold_from_report(report, "median") == 0.95
    assert threshold_from_report(report, "family") == 0.99
    with pytest.raises(ValueError, match="cannot give"):
        threshold_from_report({**report, "threshold_rule": "median"}, "pooled")
    with pytest.raises(ValueError, match="rule"):
        threshold_from_report(report, "mean")


def test_family_weights_make_families_equal():
    fams = ["a"] * 6 + ["b"] * 2 + ["c"]
    w = family_weights(fams)
    assert w.mean() == pytest.approx(1.0)
    totals = {f: w[[i for i, g in enumerate(fams) if g == f]].sum() for f in "abc"}
    assert totals["a"] == pytest.approx(totals["b"]) == pytest.approx(totals["c"])
    assert family_weights([]).size == 0


def test_the_replayed_agent_costs_are_the_measured_ones():
    # the agent-defaults view plans with the costs benchmarks/overhead.py measured; a new
    # measurement (or a change to the agent's margin) must be carried into replay.AGENT_COSTS
    import json
    from pathlib import Path

    from grokwatch.forecast.replay import AGENT_COSTS, MLP_COSTS

    path = Path(__file__).parents[2] / "benchmarks" / "results" / "overhead.json"
    models = json.loads(path.read_text())["models"]
    for name, costs in (("mlp", MLP_COSTS), ("transformer", AGENT_COSTS["transformer"])):
        m = models[name]
        measured = (
            m["core_evaluation_steps"],
            m["one_off_seconds"] * 1000 / m["train_step_ms"],
            m["bookkeeping_us_per_call"] / 1000 / m["train_step_ms"],
        )
        assert costs == pytest.approx(measured, rel=0.05), name


def test_agent_defaults_replay_the_capped_schedule_on_the_corpus_grid():
    from grokwatch.schedule import planned_steps

    steps = np.array([1, *range(50, 12001, 50)])
    kept = steps[thin(steps, "default", budget=3000, costs=AgentCosts(1.8, 1.8, 0.0))]
    planned = planned_steps(3000, 1.8)
    assert planned[:3] == [0, 140, 270]  # the capped agent's own steps (issue 18)
    # each planned step read at the newest corpus step at or before it, and nothing else
    expected = {1} | {int(steps[steps <= p].max()) for p in planned if p >= 1}
    assert set(kept.tolist()) == expected
    assert kept[1:4].tolist() == [100, 250, 400]
    assert len(kept) < len(steps[thin(steps, 50)]) / 3  # the cap thins the 50-step grid
    # a cheaper evaluation (the transformer's) buys more evaluations; no budget: the record's
    cheap = thin(steps, "default", budget=12000, costs=AgentCosts(0.93, 0.93, 0.0))
    assert len(cheap) > len(thin(steps, "default", budget=12000, costs=AgentCosts(1.8, 1.8, 0.0)))
    assert thin(steps, "default").tolist() == thin(steps, "default", budget=12000).tolist()
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
        threshold_rule="family", balance="family",
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
    # hopeless: within the miss share on every family, so the most careful family's threshold
    assert model.hopeless_threshold_ == min(report.family_hopeless.values())
    back = model_io.load(model_io.save(model, tmp_path / "m.npz"))
    assert back.alert_threshold_ == model.alert_threshold_
    assert back.hopeless_threshold_ == model.hopeless_threshold_


def test_median_rule_fit_matches_the_report_rule(families):
    """The median rule in a fit gives what :func:`threshold_from_report` reads off a pooled
    fit's report (the re-thresholded fold models of a leave-one-family-out run are the
    models that fit would have given)."""
    kw = {"fold_by": "family", "C_grid": (1.0,), "params": FAST, "far": 0.2}
    _, rp = fit_replays(families, **kw)
    median, rm = fit_replays(families, threshold_rule="median", **kw)
    assert rm.family_thresholds == rp.family_thresholds
    assert median.alert_threshold_ == float(np.median(list(rm.family_thresholds.values())))
    assert median.alert_threshold_ == threshold_from_report(rp.to_json(), "median")


class _Constant:
    """A fold model that forecasts P = 0.5 for every row."""

    def predict_proba(self, X):
        return np.column_stack([np.full(len(X), 0.5), np.full(len(X), 0.5)])


def test_isotonic_map_weighs_every_family_the_same(families):
    """With one forecast value, the isotonic map is the weighted share of grokking rows:
    each run weighs 1 within its family and every family the same, so a big family with few
    grokkers does not set the level of the others."""
    from grokwatch.forecast.training import _isotonic_map

    big = [r for r in families if r.family == "alpha"]
    big = big + [dataclasses.replace(r, run_id=f"{r.run_id}-{k}") for k in range(4) for r in big
                 if not r.groks]  # fmt: skip
    small = [r for r in families if r.family != "alpha"]
    knots = _isotonic_map([(_Constant(), big), (_Constant(), small)])
    share = {
        fam: np.mean([r.groks for r in big + small if r.family == fam])
        for fam in ("alpha", "beta", "gamma")
    }
    assert share["alpha"] < 0.2 < share["beta"]
    assert np.interp(0.5, knots[0], knots[1]) == pytest.approx(
        np.mean(list(share.values())), abs=1e-5
    )


def test_clear_rule_leaves_the_near_misses_out_of_the_false_alarm_budget(families):
    """``clear``: the pooled rule over the negatives whose test accuracy stayed below
    NEAR_MISS before their budget; the near misses neither set nor count in the threshold."""
    from grokwatch.forecast.training import near_miss
    from grokwatch.forecast.transfer import NEAR_MISS

    kw = {"fold_by": "family", "C_grid": (1.0,), "params": FAST, "far": 0.2}
    _, before = fit_replays(families, **kw)
    neg = [r for r in families if r.outcome in NEGATIVE]
    # the negatives that alarm the most become near misses (test accuracy at NEAR_MISS half way);
    # the forecasts read the features, not these raw measures, so they stay the same
    top = sorted(neg, key=lambda r: eligible_max(r, before.oof_forecasts[r.run_id]))[-3:]
    ids = {r.run_id for r in top}
    runs = []
    for r in families:
        if r.run_id in ids:
            acc = np.array(r.measures["test_accuracy"], float)
            acc[len(acc) // 2] = NEAR_MISS
            r = dataclasses.replace(r, measures={**r.measures, "test_accuracy": acc})
        runs.append(r)
    assert sorted(r.run_id for r in runs if r.outcome in NEGATIVE and near_miss(r)) == sorted(ids)
    pooled, rp = fit_replays(runs, **kw)
    clear, rc = fit_replays(runs, threshold_rule="clear", **kw)
    kept = [eligible_max(r, rc.oof_forecasts[r.run_id]) for r in runs
            if r.outcome in NEGATIVE and r.run_id not in ids]  # fmt: skip
    assert clear.alert_threshold_ == rule_threshold("pooled", {"all": kept}, 0.2)
    assert clear.alert_threshold_ < pooled.alert_threshold_  # the loudest negatives are out
    for report, rule in ((rp.to_json() | {"threshold_rule": "median"}, "clear"),
                         (rc.to_json(), "median"), (rc.to_json(), "family")):  # fmt: skip
        # a clear fit's families' own thresholds leave the near misses out: not the others'
        with pytest.raises(ValueError, match="cannot give"):
            threshold_from_report(report, rule)
    assert rc.family_thresholds != rp.family_thresholds
