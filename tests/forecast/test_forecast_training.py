"""Fitting on a corpus (grouped CV, validation thresholds), the evaluation, the baselines and
the ``fit`` / ``evaluate`` commands, on seeded synthetic runs."""

from __future__ import annotations

import inspect
import json
import math

import numpy as np
import pytest
from _forecast_synth import make_corpus, make_run
from _images import assert_is_a_plot
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from grokwatch.cli import main
from grokwatch.forecast import io as model_io
from grokwatch.forecast.baselines import BASELINES
from grokwatch.forecast.evaluate import OURS, alert_step, auroc, evaluate, format_table
from grokwatch.forecast.replay import choose_alert_threshold, config_group, replay
from grokwatch.forecast.training import (
    _folds,
    fit_corpus,
    fit_replays,
    hopeless_threshold,
    training_rows,
)


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(32, seed=1)


@pytest.fixture(scope="module")
def fitted(corpus):
    return fit_corpus(corpus, folds=4, C_grid=(1.0,), extra_cadences=(250,), params={"n_trees": 40})


def test_config_groups_ignore_seeds_only():
    a = {"p": 23, "lr": 1e-3, "seed": 1, "data_seed": 7}
    assert config_group(a) == config_group({**a, "seed": 2, "data_seed": 9})
    assert config_group(a) != config_group({**a, "lr": 2e-3})


def test_folds_never_split_a_configuration():
    groups = [f"g{i // 3}" for i in range(30)]
    masks = _folds(groups, 4, seed=0)
    assert sum(m.astype(int) for m in masks).tolist() == [1] * 30
    for m in masks:
        inside = {g for g, k in zip(groups, m, strict=True) if k}
        outside = {g for g, k in zip(groups, m, strict=True) if not k}
        assert not inside & outside


def test_training_rows_stop_at_t_grok_and_weigh_each_run_once(corpus):
    reps = [replay(r) for r in corpus[:4]]
    _, y, w, t, idx = training_rows(reps)
    for i, r in enumerate(reps):
        rows = idx == i
        assert w[rows].sum() == pytest.approx(1.0)
        assert set(y[rows]) == {int(r.groks)}
        if r.t_grok is not None:
            assert rows.sum() == int((r.steps < r.t_grok).sum())
            assert np.all(np.isfinite(t[rows])) and np.all(t[rows] > 0)
        else:
            assert np.all(np.isnan(t[rows]))


@given(st.lists(st.floats(0, 1), min_size=1, max_size=60), st.sampled_from([0.0, 0.05, 0.2]))
def test_alert_threshold_keeps_the_false_alarm_rate_and_is_the_smallest(maxima, far):
    th = choose_alert_threshold(maxima, far)
    fa = np.mean([m >= th for m in maxima])
    assert fa <= far + 1e-12
    below = np.nextafter(th, -np.inf)
    assert np.mean([m >= below for m in maxima]) > far or th <= min(maxima)


@given(
    st.lists(st.floats(-5, 5), min_size=1, max_size=30),
    st.lists(st.floats(-5, 5), min_size=1, max_size=30),
)
def test_auroc_equals_sklearn(pos, neg):
    y = [1] * len(pos) + [0] * len(neg)
    assert auroc(pos, neg) == pytest.approx(roc_auc_score(y, pos + neg))


def test_fit_corpus_chooses_thresholds_on_validation_and_separates_the_classes(fitted):
    model, report = fitted
    assert report.n_runs == 32 and report.folds == 4 and report.C == 1.0
    assert 0.0 <= report.hopeless_threshold <= report.alert_threshold <= 1.0
    assert model.alert_threshold_ == report.alert_threshold
    assert report.oof["false_alarm_rate"] <= 0.05
    assert report.oof["recall"] >= 0.8  # the synthetic precursor is easy


def test_evaluate_reports_every_signal_and_metric(fitted):
    model, _ = fitted
    runs = [replay(r) for r in make_corpus(16, seed=7, family="heldout-synth", split="eval")]
    calib = [replay(r) for r in make_corpus(16, seed=8)]
    res = evaluate(model, runs, calib)
    names = [OURS, *(b.name for b in BASELINES)]
    assert list(res["groups"]) == ["heldout-synth", "overall"]
    table = res["groups"]["overall"]["signals"]
    assert list(table) == names and set(res["curves"]) == set(names)
    assert set(res["groups"]["heldout-synth"]["curves"]) == set(names)
    ours = table[OURS]["matched"]
    for key in ("recall", "false_alarm_rate", "auroc_10", "auroc_25", "auroc_50"):
        assert 0.0 <= ours[key] <= 1.0, (key, ours[key])
    assert ours["median_lead_fraction"] > 0  # alerts come before t_grok
    assert ours["median_lead_steps"] > 0
    assert 0.0 <= ours["t_grok_median_rel_error"] < 1.0
    assert ours["false_alarm_rate"] <= 0.05 and ours["recall"] >= 0.75
    assert ours["auroc_50"] > 0.9
    assert "fixed" in table["spectral_entropy_0.609"]
    text = format_table(res)
    assert "| grokwatch |" in text and "AUROC 25%" in text
    assert {"mc_dropout_peak_before_t_grok", "spectral_entropy_below_0.609"} <= set(res["claims"])
    assert "change_point_test_accuracy_up_before_t_grok" in res["claims"]


@pytest.mark.parametrize("baseline", BASELINES, ids=lambda b: b.name)
def test_baseline_scores_are_causal(baseline):
    run = make_run(5, groks=True)
    full = replay(run)
    cut = 25
    prefix = replay(type(run)(run.meta, run.steps[:cut], run.columns, run.values[:cut]))
    np.testing.assert_array_equal(baseline.scores(prefix), baseline.scores(full)[:cut])


def test_alert_step_ignores_alerts_at_or_after_t_grok():
    r = replay(make_run(6, groks=True))
    score = (r.steps >= r.t_grok).astype(float)
    assert alert_step(r, score, 0.5) is None
    assert alert_step(r, np.ones(r.steps.size), 0.5) == int(r.steps[0])


def test_fit_and_evaluate_commands_write_a_model_json_and_figures(tmp_path):
    from trainer.corpus import write_run

    root = tmp_path / "corpus"
    root.mkdir()
    (root / "corpus.json").write_text(
        json.dumps({"format": "grokwatch-corpus", "version": 1, "specs": {}, "holdout": {}})
    )
    for r in [*make_corpus(24, seed=2), *make_corpus(8, seed=3, family="other", split="eval")]:
        write_run(root, r.meta, r.steps, r.columns, r.values)
    model = tmp_path / "m.npz"
    assert (
        main(
            [
                "fit",
                "--corpus",
                str(root),
                "--out",
                str(model),
                "--split",
                "train",
                "--fold-by",
                "config",
                "--measures",
                "all",
                "--folds",
                "3",
                "--C",
                "0.1",
                "--cadences",
                "250",
                "--classifier",
                "gam",
            ]
        )
        == 0
    )
    fitted_model = model_io.load(model)
    report = fitted_model.fit_report_
    assert report["n_runs"] == 24
    assert (report["split"], report["fold_by"], report["measures"]) == ("train", "config", None)
    assert (report["C_grid"], report["cadences"]) == ([0.1], [250])
    out = tmp_path / "ev"
    assert (
        main(
            [
                "evaluate",
                "--corpus",
                str(root),
                "--model",
                str(model),
                "--out",
                str(out),
                "--split",
                "eval",
                "--timelines",
                "2",
            ]
        )
        == 0
    )
    res = json.loads((out / "evaluation.json").read_text())
    assert res["eval"]["groups"]["overall"]["n_runs"] == 8
    assert_is_a_plot(out / "lead_vs_far_eval_overall.png")
    assert_is_a_plot(out / "lead_vs_far_eval_other.png")
    timelines = sorted((out / "timelines").glob("*.png"))
    assert len(timelines) >= 2
    for path in timelines:
        assert_is_a_plot(path)
    assert not math.isnan(res["model"]["alert_threshold"])


def _write_corpus(root, runs):
    from trainer.corpus import write_run

    root.mkdir()
    (root / "corpus.json").write_text(
        json.dumps({"format": "grokwatch-corpus", "version": 1, "specs": {}, "holdout": {}})
    )
    for r in runs:
        write_run(root, r.meta, r.steps, r.columns, r.values)
    return root


def test_evaluate_refuses_runs_the_model_was_fitted_on(fitted, tmp_path, monkeypatch, capsys):
    """The runs of a fit are retraced from the model's fit report (corpus, split, families,
    cap and seed; every run of those splits when the sample cannot be retraced), and
    ``evaluate`` refuses to judge a model on any of them; no fitting needed."""
    from grokwatch.exceptions import ConfigError
    from grokwatch.forecast.commands import evaluate_corpus, fitting_runs, sample_families
    from grokwatch.forecast.forecaster import GrokForecaster
    from trainer.corpus import load

    train = make_corpus(12, seed=2)
    evals = [*make_corpus(6, seed=3, split="eval"), *make_corpus(6, seed=4, split="heldout")]
    root = _write_corpus(tmp_path / "corpus", [*train, *evals])
    monkeypatch.chdir(tmp_path)  # the report names the corpus as given: relative
    capped = sample_families(list(load(root, split=["train", "eval"])), 5, seed=0)
    fit = {"corpus": "corpus", "split": "train,eval", "families": ["synth"], "seed": 0}
    exact = {**fit, "cap_per_family": 5, "n_runs": 5}
    ids, is_exact = fitting_runs(exact, root)
    assert is_exact and ids == {r.run_id for r in capped}
    ids, is_exact = fitting_runs({**exact, "n_runs": 7}, root)  # not the corpus it was fitted on
    assert not is_exact and len(ids) == 18
    assert fitting_runs({**exact, "corpus": "elsewhere/other"}, root) == (set(), True)
    assert fitting_runs({"n_runs": 5}, root) is None  # nothing recorded: nothing to tell by

    model = GrokForecaster()
    model.fit_report_ = {**fit, "cap_per_family": None, "n_runs": 18}
    with pytest.raises(ConfigError, match=r"6 of the 12 runs to evaluate .* --lofo"):
        evaluate_corpus(root, model=model, out=None, splits=("eval", "heldout"))
    model_io.save(fitted[0], tmp_path / "m.npz", report=model.fit_report_)
    args = ["evaluate", "--corpus", "corpus", "--model", "m.npz", "--split", "eval,heldout"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "6 of the 12 runs" in err and "in-sample" in err and "--lofo" in err
    # a fold model of evaluate --lofo names only its families (fitted on every split): every
    # run of them counts, and none of another family
    fold = {"families": ["synth"], "n_runs": 20}
    assert fitting_runs(fold, root) == ({r.run_id for r in [*train, *evals]}, False)
    assert fitting_runs({**fold, "families": ["other"]}, root) == (set(), False)
    model.fit_report_ = fold
    with pytest.raises(ConfigError, match=r"12 of the 12 runs .* names only its families"):
        evaluate_corpus(root, model=model, out=None, splits=("eval", "heldout"))
    # fitted on train only: the evaluated runs are held out, and nothing is retraced
    assert fitting_runs({**fit, "split": "train", "n_runs": 12}, root) == (
        {r.run_id for r in train},
        True,
    )


def test_budget_augmentation_relabels_with_smaller_budgets(corpus):
    from grokwatch.forecast.features import FEATURE_NAMES

    reps = [replay(r) for r in corpus[:6]]
    X0, *_ = training_rows(reps)
    X, y, w, t, idx = training_rows(reps, budget_samples=2, seed=1)
    assert X.shape[0] == 3 * X0.shape[0]
    b = FEATURE_NAMES.index("log_budget_over_t")
    for i, r in enumerate(reps):
        rows = idx == i
        assert w[rows].sum() == pytest.approx(1.0)
        assert np.all(X[rows, b] >= 0)  # every drawn budget lies at or after the row's step
        assert np.isfinite(t[rows]).sum() == (int((r.steps < r.t_grok).sum()) if r.groks else 0)
        if not r.groks:
            assert not y[rows].any()
    # a grokking run is negative under a budget that ends before its t_grok
    r = next(r for r in reps if r.groks)
    i = reps.index(r)
    rows = np.flatnonzero(idx == i)
    steps = np.tile(r.steps[r.steps < r.t_grok], 3)
    budgets = steps * np.exp(X[rows, b])
    np.testing.assert_array_equal(y[rows], (r.t_grok <= budgets + 1e-6).astype(int))


def test_hopeless_threshold_at_the_default_sits_under_every_grokkers_lowest_p():
    """The default miss (0): no grokking run of a fitting family is ever called hopeless; a
    miss of 1/4 lets the lowest of four runs be called (its own P is at the threshold's
    strict upper side), and the threshold never passes the alert threshold."""
    lowest = [0.30, 0.02, 0.10, math.inf]  # the inf run: never eligible before t_grok
    default = hopeless_threshold(lowest, 0.0, alert=0.9)
    assert default < 0.02 and default == np.nextafter(0.02, -np.inf)
    assert all(default < v for v in lowest)
    assert hopeless_threshold(lowest, 0.25, alert=0.9) == np.nextafter(0.10, -np.inf)
    assert hopeless_threshold(lowest, 0.25, alert=0.05) == 0.05
    assert hopeless_threshold([math.inf], 0.0, alert=0.9) == 0.0
    assert inspect.signature(fit_replays).parameters["hopeless_miss"].default == 0.0


def test_the_shipped_model_was_fitted_with_the_recipe():
    """The defaults of ``grokwatch fit`` (:data:`RECIPE`) and the shipped model cannot drift
    apart: its fit report and hyperparameters agree with the recipe (no fitting), and the
    documented command that fits it names nothing but the corpus and the file. The C grid
    and the false-alarm budget are in the reports of models fitted since they were recorded;
    before, only the chosen C is, and it must lie in the grid."""
    import re
    from pathlib import Path

    from grokwatch.forecast.io import load_default
    from grokwatch.forecast.training import RECIPE

    model = load_default()
    report = model.fit_report_
    measures = report["measures"]
    assert {
        "split": report["split"],
        "measures": None if measures is None else tuple(measures),
        "fold_by": report["fold_by"],
        "calibrate": report["calibrate"],
        "cadences": tuple(report["cadences"]),
        "budget_samples": report["budget_samples"],
        "cap": report["cap_per_family"],
        "seed": report["seed"],
        "C_grid": tuple(report["C_grid"]),
        "far": report["far"],
        **{k: model.get_params()[k] for k in RECIPE.params},
    } == {
        "split": RECIPE.split,
        "measures": RECIPE.measures,
        "fold_by": RECIPE.fold_by,
        "calibrate": RECIPE.calibrate,
        "cadences": RECIPE.cadences,
        "budget_samples": RECIPE.budget_samples,
        "cap": RECIPE.cap,
        "seed": RECIPE.seed,
        "C_grid": RECIPE.C_grid,
        "far": RECIPE.far,
        **RECIPE.params,
    }
    assert report["C"] == model.C and report["C"] in RECIPE.C_grid
    if RECIPE.fold_by == "family":
        assert report["folds"] == len(report["families"])
    if RECIPE.cap is not None:
        assert report["n_runs"] <= RECIPE.cap * len(report["families"])
    docs = (Path(__file__).parents[2] / "docs" / "forecaster.md").read_text()
    command = re.search(r"^grokwatch fit ((?:.*\\\n)*.*)$", docs, re.MULTILINE)
    assert command is not None
    assert command[1].replace("\\\n", " ").split() == [
        "--corpus",
        report["corpus"],
        "--out",
        "grokwatch/forecast/model/grokforecaster.npz",
    ]


def test_family_weight_of_one_changes_nothing_and_other_weights_change_the_fit():
    runs = make_corpus(12, seed=1, family="alpha") + make_corpus(12, seed=2, family="beta")
    base, extra = [replay(r) for r in runs], [replay(r, cadence=250) for r in runs]
    options = {"fold_by": "family", "C_grid": (1.0,), "params": {"n_trees": 10}}
    plain, _ = fit_replays(base, extra, **options)
    ones, _ = fit_replays(base, extra, family_weight={"alpha": 1.0}, **options)
    X = np.concatenate([r.X for r in base])
    np.testing.assert_array_equal(ones.predict_proba(X), plain.predict_proba(X))
    heavy, _ = fit_replays(base, extra, family_weight={"alpha": 3.0}, **options)
    assert not np.allclose(heavy.predict_proba(X), plain.predict_proba(X))
    with pytest.raises(ValueError, match="family_weight"):
        fit_replays(base, extra, family_weight={"alpha": -1.0}, **options)


def test_every_recipe_setting_is_an_option_of_fit():
    """The CLI passes on the recipe options it was given by name (cli.RECIPE_OPTIONS): a
    field of the recipe missing there would silently drop the user's flag."""
    import dataclasses

    from grokwatch.cli import RECIPE_OPTIONS, build_parser
    from grokwatch.forecast.training import Recipe

    assert set(RECIPE_OPTIONS) == {f.name for f in dataclasses.fields(Recipe)}
    fit = build_parser().parse_args(
        ["fit", "--corpus", "c", "--out", "m.npz", "--cap", "7", "--trees", "5", "--far", "0.1"]
    )
    assert {k: v for k, v in vars(fit).items() if k in RECIPE_OPTIONS} == {
        "cap": 7,
        "n_trees": 5,
        "far": 0.1,
    }
