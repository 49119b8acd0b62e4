"""Transfer to a new family: family-balanced weights (the isotonic map's), the default-grid
replay, the v1 one-hot MLPs' family; and fit_replays's thresholds on small synthetic
families."""

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
from grokwatch.forecast.transfer import family_weights

FAST = {"classifier": "gam", "n_trees": 10}


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


def test_fit_thresholds_come_from_the_fitting_families_out_of_fold(families, tmp_path):
    """The alert threshold keeps the false-alarm budget over the pooled negatives' out-of-fold
    forecasts; each family's own threshold is reported; the hopeless threshold is the most
    careful family's; both survive a save and load."""
    model, report = fit_replays(families, fold_by="family", C_grid=(1.0,), params=FAST, far=0.2)
    neg = {
        fam: [eligible_max(r, report.oof_forecasts[r.run_id]) for r in families
              if r.family == fam and r.outcome in NEGATIVE]
        for fam in ("alpha", "beta", "gamma")
    }  # fmt: skip
    pooled = [v for vs in neg.values() for v in vs]
    assert model.alert_threshold_ == choose_alert_threshold(pooled, 0.2)
    assert np.mean(np.array(pooled) >= model.alert_threshold_) <= 0.2
    assert report.family_thresholds == {f: choose_alert_threshold(v, 0.2) for f, v in neg.items()}
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
