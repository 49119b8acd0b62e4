"""Leave one family out: the splits, no leakage of the held-out family into fitting or
calibration, the reliability/ECE arithmetic, the isotonic calibration, the command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from _forecast_synth import make_corpus
from hypothesis import given
from hypothesis import strategies as st

from grokwatch.cli import main
from grokwatch.forecast import io as model_io
from grokwatch.forecast.calibration import forecast_rows, reliability
from grokwatch.forecast.evaluate import evaluate
from grokwatch.forecast.lofo import (
    GOALS,
    INTERVAL_KEYS,
    MINIMAL_MEASURES,
    family_summary,
    forecasts_of,
    format_lofo,
    goal_intervals,
    goals_decided,
    lofo_folds,
    macro_average,
    minimal_run,
    run_lofo,
)
from grokwatch.forecast.replay import replay
from grokwatch.forecast.training import RECIPE, fit_replays

FAST = {"classifier": "gam", "n_trees": 10}
"""Fits in milliseconds: the splitting does not depend on the model."""


@pytest.fixture(scope="module")
def runs():
    out = make_corpus(12, seed=1, family="alpha")
    out += make_corpus(12, seed=2, family="beta")
    out += make_corpus(8, seed=3, family="gamma", split="eval")
    out += make_corpus(4, seed=4, family="alpha", split="heldout")
    return out


@pytest.fixture(scope="module")
def replays(runs):
    base = [replay(r) for r in runs]
    extra = [replay(r, cadence=250) for r in runs]
    return base, extra


def test_folds_hold_out_each_family_whole_and_never_fit_on_heldout_splits(replays):
    base, extra = replays
    folds = lofo_folds(base, extra)
    assert [f.family for f in folds] == ["alpha", "beta", "gamma"]
    for f in folds:
        assert {r.family for r in f.test} == {f.family}
        assert len(f.test) == sum(r.family == f.family for r in base)  # heldout split too
        assert f.family not in {r.family for r in (*f.train, *f.extra)}
        assert "heldout" not in {r.split for r in (*f.train, *f.extra)}
        assert {r.run_id for r in f.extra} == {r.run_id for r in f.train}
        others = [r for r in base if r.family != f.family and r.split != "heldout"]
        assert {r.run_id for r in f.train} == {r.run_id for r in others}


def test_one_family_is_refused(replays):
    base, _ = replays
    with pytest.raises(ValueError, match="needs >= 2 families"):
        lofo_folds([r for r in base if r.family == "beta"])


def test_held_out_runs_never_reach_fitting_or_calibration(replays):
    """The orchestrator hands the fitting step (which also chooses C, the thresholds and the
    calibration: everything learned) and the baselines' calibration only other families'
    runs, and evaluates on the held-out family alone."""
    base, extra = replays
    seen: list[tuple[str, set[str], set[str], set[str]]] = []

    def fit(train, extra_):
        model, _ = fit_replays(
            train, extra_, folds=2, C_grid=(1.0,), params=FAST, calibrate="isotonic"
        )
        ids = {r.run_id for r in (*train, *extra_)}
        seen.append(("fit", {r.family for r in (*train, *extra_)}, ids, set()))
        return model

    def evaluate_fold(model, test, calibration):
        seen.append(
            (
                "evaluate",
                {r.family for r in calibration},
                {r.run_id for r in calibration},
                {r.family for r in test},
            )
        )
        return evaluate(model, test, calibration)

    folds = lofo_folds(base, extra)
    result = run_lofo(folds, fit=fit, evaluate_fold=evaluate_fold)
    assert set(result["families"]) == {"alpha", "beta", "gamma"}
    assert len(seen) == 2 * len(folds)
    calls = list(zip(seen[::2], seen[1::2], strict=True))
    for fold, (fit_call, eval_call) in zip(folds, calls, strict=True):
        held = {r.run_id for r in base if r.family == fold.family}
        assert fold.family not in fit_call[1] and not held & fit_call[2]
        assert fold.family not in eval_call[1] and not held & eval_call[2]
        assert eval_call[3] == {fold.family}


def test_lofo_result_has_every_headline_and_a_table(runs, replays):
    base, extra = replays
    folds = lofo_folds(base, extra)[:2]

    def fit(train, extra_):
        return fit_replays(train, extra_, folds=2, C_grid=(1.0,), params=FAST)[0]

    minimal = {r.run_id: replay(minimal_run(r)) for r in runs}
    views = {"cadence 250": {r.run_id: r for r in extra}}
    res = run_lofo(folds, fit=fit, minimal=minimal, views=views)
    thinned = res["views"]["cadence 250"]["families"]
    assert set(thinned) == {"alpha", "beta"}
    assert thinned["alpha"]["n_runs"] == res["families"]["alpha"]["n_runs"]
    for fam in ("alpha", "beta"):
        s = res["families"][fam]
        for key in ("recall", "far", "lead_gap", "auroc25", "coverage", "ece"):
            assert key in s
        assert 0.0 <= s["ece"] <= 1.0
        assert set(s["goals"]) == {"recall", "lead_gap", "auroc25", "coverage", "ece", "ahead"}
        assert s["minimal"]["mean_confidence"] < 1.0  # the missing measures lower it
    assert res["macro"]["recall"] == pytest.approx(
        np.mean([res["families"][f]["recall"] for f in ("alpha", "beta")])
    )
    text = format_lofo(res)
    assert "| alpha |" in text and "macro average" in text and "Minimal users" in text
    assert "thinned (cadence 250)" in text
    for fam in ("alpha", "beta"):  # the main view's numbers have their intervals
        s = res["families"][fam]
        assert set(s["intervals"]) == set(INTERVAL_KEYS)
        assert set(s["goals_decided"]) == set(GOALS) - {"ahead"}
    assert "the sample does not decide the cell" in text
    assert "intervals" not in res["views"]["cadence 250"]["families"]["alpha"]


def _family_forecasts(replays, family="alpha"):
    base, extra = replays
    fold = next(f for f in lofo_folds(base, extra) if f.family == family)
    model = fit_replays(fold.train, fold.extra, folds=2, C_grid=(1.0,), params=FAST)[0]
    return list(fold.test), forecasts_of(model, fold.test), model


def test_goal_intervals_resample_runs_within_their_outcome_and_are_seeded(replays, monkeypatch):
    import grokwatch.forecast.lofo as lofo

    runs, forecasts, model = _family_forecasts(replays)
    pos = sum(r.outcome == "grokking" for r in runs)
    neg = sum(r.outcome in ("memorization", "confusion") for r in runs)
    assert pos and neg
    seen = []
    real = lofo.metrics

    def spy(sample, sig, threshold, refs):
        seen.append((len(sample), sum(r.outcome == "grokking" for r in sample)))
        return real(sample, sig, threshold, refs)

    monkeypatch.setattr(lofo, "metrics", spy)
    first = goal_intervals(runs, forecasts, model.alert_threshold_, draws=50, seed=3)
    assert len(seen) == 2 * 50  # at the threshold and at FAR <= 5 %, on every draw
    assert set(seen) == {(len(runs), pos)}  # each draw keeps the counts of each outcome
    assert goal_intervals(runs, forecasts, model.alert_threshold_, draws=50, seed=3) == first
    assert goal_intervals(runs, forecasts, model.alert_threshold_, draws=50, seed=4) != first
    for key, span in first.items():
        if span is not None:
            assert span[0] <= span[1], key


def test_goal_intervals_of_identical_runs_are_the_point_numbers(replays):
    """Every grokking run a copy of one, every negative of one: no draw differs from the
    sample, so each interval is the number family_summary gives, twice."""
    runs, forecasts, model = _family_forecasts(replays)
    one_pos = next(r for r in runs if r.outcome == "grokking")
    one_neg = next(r for r in runs if r.outcome in ("memorization", "confusion"))
    same = [one_pos] * 5 + [one_neg] * 4
    result = evaluate(model, same, [])
    point = family_summary(same, forecasts, result)
    spans = goal_intervals(same, forecasts, model.alert_threshold_, draws=20)
    for key, span in spans.items():
        if span is None:
            assert not np.isfinite(point[key]), key
        else:
            assert span == pytest.approx([point[key], point[key]]), key


def test_goals_decided_reads_whether_an_interval_crosses_the_goal_line():
    clear = {"recall": [0.92, 0.97], "far": [0.0, 0.03], "lead_gap": [0.1, 0.3],
             "auroc25": [0.90, 0.97], "coverage": [0.75, 0.85], "ece": None}  # fmt: skip
    decided = goals_decided(clear)
    assert decided == {
        "recall": True,  # both numbers wholly inside: met whatever the draw
        "lead_gap": True,  # wholly below 0.5: not met whatever the draw
        "auroc25": False,  # reaches across 0.95
        "coverage": True,
        "ece": None,  # no interval
    }
    assert goals_decided(clear | {"far": [0.02, 0.08]})["recall"] is False
    assert goals_decided(clear | {"recall": [0.5, 0.8], "far": [0.02, 0.08]})["recall"] is True
    assert goals_decided(clear | {"coverage": [0.85, 0.95]})["coverage"] is False
    assert goals_decided(clear | {"coverage": [0.91, 0.99]})["coverage"] is True
    family = {"n_runs": 3, "n_grokking": 1, "n_negative": 2, "threshold": 0.9}
    family |= {"goals": dict.fromkeys(GOALS, False) | {"recall": True}}
    text = format_lofo({"families": {"a": family | {"goals_decided": decided, "intervals": clear}}})
    row = next(line for line in text.splitlines() if line.startswith("| a | met"))
    assert row.split(" | ")[1:4] == ["met", "**not met**", "**not met**?"]
    assert "| a | [0.92, 0.97] | [0.00, 0.03] |" in text and "| — |" in text


def _summary(recall, lead, far, baselines):
    """A family's entry of ``lofo.json``, as far as the baseline table reads it."""
    keys = ("n_runs", "n_grokking", "n_negative", "threshold", "recall", "far", "ece")
    out = {k: 1.0 for k in keys} | {"goals": dict.fromkeys(GOALS, True)}
    out |= {"recall_far05": recall, "lead_gap_all_far05": lead, "far_far05": far}
    out["baselines_far05"] = {
        n: {"recall": r, "lead_gap_all": g, "far": 0.04} for n, (r, g) in baselines.items()
    }
    return out


def _baseline_rows(text, caption_at):
    """The rows of the baseline table after the ``caption_at``-th caption, by first cell."""
    block = text.split("every signal at its own threshold")[caption_at].split("\n\n")[1]
    rows = [line.strip("|").split(" | ") for line in block.splitlines()[2:]]
    return {r[0].strip(): [c.strip() for c in r[1:]] for r in rows}


def test_baseline_tables_have_our_far_a_macro_row_and_one_for_every_view():
    """Rendered from the JSON alone: our recall / lead and the FAR our threshold reaches,
    every baseline's recall / lead, the macro average (a baseline's over the families that
    have it), and the same table for each view that holds baselines."""
    fams = {
        "a": _summary(0.8, 0.4, 0.03, {"norm": (0.2, 0.0), "rise": (0.6, 0.1)}),
        "b": _summary(0.6, 0.2, 0.05, {"norm": (0.4, 0.2)}),  # no "rise" on b
    }
    view = {"c": _summary(0.5, 0.1, 0.04, {"norm": (0.1, 0.0)})}
    without = {"c": {k: v for k, v in view["c"].items() if k != "baselines_far05"}}
    result = {
        "families": fams,
        "macro": macro_average(fams),
        "views": {
            "cadence 500": {"families": view, "macro": macro_average(view)},
            "no baselines": {"families": without, "macro": macro_average(without)},
        },
    }
    text = format_lofo(result)
    assert text.count("every signal at its own threshold") == 2  # the view without: none
    assert "| held-out family | **grokwatch** | FAR | norm | rise |" in text
    rows = _baseline_rows(text, 1)
    assert rows["a"] == ["0.80 / 0.40", "0.03", "0.20 / 0.00", "0.60 / 0.10"]
    assert rows["b"] == ["0.60 / 0.20", "0.05", "0.40 / 0.20", "—"]
    assert rows["**macro average**"] == ["0.70 / 0.30", "0.04", "0.30 / 0.10", "0.60 / 0.10"]
    view_rows = _baseline_rows(text.split("thinned (cadence 500)")[1], 1)
    assert view_rows["c"] == ["0.50 / 0.10", "0.04", "0.10 / 0.00"]
    assert view_rows["**macro average**"] == view_rows["c"]


def test_minimal_users_get_a_sentence_when_their_numbers_are_the_headlines():
    """A model that reads only loss and accuracy gives minimal users the headline numbers:
    one sentence says so (with the mean confidence); otherwise a table of the numbers the
    JSON has (an older ``lofo.json`` has no coverage: no column is made up for it)."""
    fams = {"a": _summary(0.8, 0.4, 0.03, {}) | {"lead_gap": 0.5, "coverage": 0.8}}
    same = {k: fams["a"][k] for k in ("recall", "far", "recall_far05", "ece")}
    fams["a"]["minimal"] = same | {"mean_confidence": 0.9}
    text = format_lofo({"families": fams})
    assert "Minimal users" in text and "cell for cell" in text and "a 0.90" in text
    assert "mean confidence |" not in text  # no table
    fams["a"]["minimal"] = same | {"recall": 0.7, "coverage": 0.6, "mean_confidence": 0.9}
    text = format_lofo({"families": fams})
    assert "cell for cell" not in text
    assert "| held-out family | recall | FAR | recall at FAR ≤ 5 % | 80 % coverage | ECE | " in text
    assert "| a | 0.70 | 1.00 | 0.80 | 0.60 | 1.000 | 0.90 |" in text


def _committed_lofo_records() -> list:
    from _scripts import ROOT

    forecast = ROOT / "benchmarks" / "results" / "forecast"
    return [forecast / "lofo.json", *sorted(forecast.glob("lofo_ablations/*/lofo.json"))]


@pytest.mark.parametrize("committed", _committed_lofo_records(), ids=lambda p: p.parent.name)
def test_the_committed_lofo_md_is_the_render_of_the_committed_lofo_json(tmp_path, committed):
    """``doc_tables.py --lofo-md`` writes a ``lofo.md`` from its JSON alone (no LOFO run),
    and every committed one (the headline's and each ablation's) is that render."""
    from _scripts import load_script

    doc_tables = load_script("benchmarks/doc_tables.py")
    copy = tmp_path / "lofo.json"
    copy.write_text(committed.read_text())
    written = doc_tables.write_lofo_markdown(copy)
    assert written == tmp_path / "lofo.md"
    assert written.read_text() == format_lofo(json.loads(copy.read_text())) + "\n"
    assert written.read_text() == committed.with_suffix(".md").read_text()


def test_minimal_run_keeps_only_loss_and_accuracy(runs):
    small = minimal_run(runs[0])
    assert set(small.columns) == set(MINIMAL_MEASURES)
    assert small.values.shape == (runs[0].steps.size, len(MINIMAL_MEASURES))
    j = runs[0].columns.index("test_accuracy")
    k = small.columns.index("test_accuracy")
    np.testing.assert_array_equal(small.values[:, k], runs[0].values[:, j])
    assert small.labels == runs[0].labels and small.run_id == runs[0].run_id


# -- reliability and ECE -------------------------------------------------------------------


def test_ece_of_a_hand_worked_case():
    # bin [0.1, 0.2): mean 0.1, observed 0/2 -> 0.1; bin [0.9, 1]: mean 0.9, observed 1/2 -> 0.4
    rel = reliability([0.1, 0.1, 0.9, 0.9], [0, 0, 1, 0])
    assert rel.ece == pytest.approx(0.5 * 0.1 + 0.5 * 0.4)
    assert rel.weight[1] == pytest.approx(0.5) and rel.weight[9] == pytest.approx(0.5)
    assert math.isnan(rel.mean_forecast[5])
    # weights: the second row counts three times
    rel_w = reliability([0.2, 0.2], [1, 0], [1.0, 3.0])
    assert rel_w.frequency[2] == pytest.approx(0.25)
    assert rel_w.ece == pytest.approx(0.05)


def test_ece_is_small_when_outcomes_follow_the_forecast_and_large_when_not():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 200_000)
    calibrated = rng.uniform(0, 1, p.size) < p
    assert reliability(p, calibrated).ece < 0.01
    overconfident = rng.uniform(0, 1, p.size) < 0.5 + 0.5 * (p - 0.5)  # truth is p shrunk
    # |p - (0.5 + (p - 0.5) / 2)| = |p - 0.5| / 2, whose mean over U(0, 1) is 0.125
    assert reliability(p, overconfident).ece == pytest.approx(0.125, abs=0.01)


@given(st.lists(st.floats(0, 1), min_size=1, max_size=50), st.integers(1, 20))
def test_ece_is_within_zero_and_one_and_bins_share_the_weight(ps, bins):
    y = [int(v > 0.5) for v in ps[::-1]]
    rel = reliability(ps, y, bins=bins)
    assert 0.0 <= rel.ece <= 1.0
    assert sum(rel.weight) == pytest.approx(1.0)


def test_reliability_refuses_probabilities_outside_zero_one():
    with pytest.raises(ValueError, match="within"):
        reliability([0.2, 1.5], [0, 1])
    with pytest.raises(ValueError, match="length"):
        reliability([0.2], [0, 1])


def test_isotonic_calibration_lowers_the_ece_of_a_miscalibrated_forecaster(runs, tmp_path):
    """Synthetic case: 15 boosted trees at learning rate 0.05 are far from converged, so
    their probabilities stay near the base rate although the synthetic runs are easy to
    tell apart (under-confident); the isotonic map learned out of fold must bring them
    close to what happens on new runs of the same kind."""
    base = [replay(r) for r in runs if r.family in ("alpha", "beta") and r.split == "train"]
    test = [replay(r) for r in make_corpus(24, seed=9, family="alpha")]
    few = {"n_trees": 15}
    raw, _ = fit_replays(base, folds=2, C_grid=(1.0,), params=few, calibrate="none")
    cal, _ = fit_replays(base, folds=2, C_grid=(1.0,), params=few, calibrate="isotonic")
    ece_raw = reliability(*forecast_rows(test, forecasts_of(raw, test))).ece
    ece_cal = reliability(*forecast_rows(test, forecasts_of(cal, test))).ece
    assert cal.calibration_.shape[0] == 2 and cal.calibration_.shape[1] >= 2
    assert np.all(np.diff(cal.calibration_[1]) > 0)  # strictly increasing: ranking kept
    assert ece_cal < ece_raw
    assert ece_cal < 0.1
    # the map survives saving and loading
    back = model_io.load(model_io.save(cal, tmp_path / "m.npz"))
    np.testing.assert_array_equal(back.calibration_, cal.calibration_)
    X = test[0].X
    np.testing.assert_allclose(back.predict_proba(X), cal.predict_proba(X))


def _write_corpus(runs, directory):
    """``runs`` (but family gamma) as a corpus directory, for the command."""
    from trainer.corpus import register_spec, write_run

    register_spec(directory, {"name": "synth"}, "train")
    for r in runs:
        if r.family != "gamma":
            write_run(directory, dict(r.meta), r.steps, r.columns, r.values)
    return directory


def test_evaluate_lofo_command_writes_the_json(runs, tmp_path):
    corpus = _write_corpus(runs, tmp_path / "corpus")
    out = tmp_path / "out"
    args = ["--corpus", str(corpus), "--out", str(out), "--folds", "2", "--no-plots"]
    code = main(["evaluate", "--lofo", *args])
    assert code == 0
    data = json.loads((out / "lofo.json").read_text())
    assert set(data["families"]) == {"alpha", "beta"}
    for fam in data["families"].values():
        assert {"recall", "far", "lead_gap", "auroc25", "coverage", "ece"} <= set(fam)
    settings = data["settings"]  # by default the shipped model's recipe, and no other model
    assert {k: settings[k] for k in ("fold_by", "calibrate", "budget_samples")} == {
        "fold_by": RECIPE.fold_by,
        "calibrate": RECIPE.calibrate,
        "budget_samples": RECIPE.budget_samples,
    }
    assert (settings["C_grid"], settings["fit_cadences"]) == ([*RECIPE.C_grid], [*RECIPE.cadences])
    assert (settings["params"], settings["cap_per_family"]) == (RECIPE.params, RECIPE.cap)
    measures = None if RECIPE.measures is None else list(RECIPE.measures)
    assert settings["measures"] == measures and "shipped" not in data
    assert (out / "lofo.md").read_text().startswith("| held-out family |")
    # the saved fold models, each fitted without its family, give the same numbers again
    # without refitting; a model of other training runs is refused
    from grokwatch.forecast.commands import evaluate_lofo

    saved = {f: model_io.load(out / "lofo" / "models" / f"{f}.npz") for f in ("alpha", "beta")}
    assert saved["alpha"].fit_report_["families"] == ["beta"]
    again = evaluate_lofo(
        [corpus],
        out=None,
        folds=2,
        fold_models=list(saved.values()),
        shipped=model_io.load_default(),
        say=lambda _: None,
    )
    for f in ("alpha", "beta"):
        for key in ("threshold", "recall", "far", "auroc25", "ece"):
            assert again["families"][f][key] == pytest.approx(data["families"][f][key])
    # the shipped model, scored on the families it never saw
    assert set(again["shipped"]["families"]) == {"alpha", "beta"}
    with pytest.raises(ValueError, match="no saved fold model"):
        evaluate_lofo([corpus], out=None, fold_models=[saved["alpha"]], say=lambda _: None)


def test_evaluate_lofo_never_lets_a_held_out_run_reach_fitting_or_calibration(
    runs, tmp_path, monkeypatch
):
    """The command that writes ``lofo.json`` rebuilds the folds (its own cadences), adds
    views (cadence 500, the agent's defaults) and can reuse saved fold models: spying on
    what :func:`run_lofo` receives from it, no held-out run id or family reaches a fit
    (train or thinned extra), a model fitted on it, or a calibration set -- in the headline
    evaluation and in every view, with models fitted now and with saved ones."""
    from grokwatch.forecast import commands, lofo
    from grokwatch.forecast.replay import DEFAULT_GRID

    corpus = _write_corpus(runs, tmp_path / "corpus")
    family_of = {r.run_id: r.family for r in runs}
    real_run_lofo = lofo.run_lofo
    fits: list[tuple[set[str], set[str], set[str]]] = []  # families, run ids, model's families
    evals: list[tuple[set[str], set[str], set[str], set[str], object]] = []

    def spying_run_lofo(folds, *, fit, views=None, **kwargs):
        def spy_fit(train, extra):
            model = fit(train, extra)
            ids = {r.run_id for r in (*train, *extra)}
            fitted_on = set(model.fit_report_["families"])
            fits.append(({family_of[i] for i in ids}, ids, fitted_on))
            return model

        def spy_evaluate(model, test, calibration):
            evals.append(
                (
                    {family_of[r.run_id] for r in test},
                    {family_of[r.run_id] for r in calibration},
                    {r.run_id for r in calibration},
                    set(model.fit_report_["families"]),
                    {r.cadence for r in test},
                )
            )
            return evaluate(model, test, calibration)

        return real_run_lofo(folds, fit=spy_fit, evaluate_fold=spy_evaluate, views=views, **kwargs)

    monkeypatch.setattr(lofo, "run_lofo", spying_run_lofo)

    def check(result):
        assert set(result["views"]) == {"cadence 500", commands.AGENT_DEFAULTS}
        assert len(fits) == 2 and len(evals) == 2 * 3  # per fold: the headline and two views
        for (fit_fams, fit_ids, fitted_on), fam in zip(fits, ("alpha", "beta"), strict=True):
            held = {i for i, f in family_of.items() if f == fam}
            assert fam not in fit_fams | fitted_on and not held & fit_ids
        cadences = set()
        for test_fams, cal_fams, cal_ids, fitted_on, cadence in evals:
            (fam,) = test_fams  # one held-out family a call
            held = {i for i, f in family_of.items() if f == fam}
            assert fam not in cal_fams | fitted_on and not held & cal_ids
            cadences |= cadence
        assert cadences == {None, 500, DEFAULT_GRID}  # the views were judged too

    result = commands.evaluate_lofo([corpus], out=None, folds=2, params=FAST, say=lambda _: None)
    check(result)
    # saved fold models (``_saved_fold``): each fold gets the one fitted without its family,
    # here handed over in the order that would leak if only the run count were matched
    fits.clear()
    evals.clear()
    saved = [result["models"]["beta"], result["models"]["alpha"]]
    assert saved[0].fit_report_["n_runs"] == saved[1].fit_report_["n_runs"]
    check(commands.evaluate_lofo([corpus], out=None, fold_models=saved, say=lambda _: None))


def test_a_run_is_never_called_hopeless_while_memorizing_or_generalizing(replays):
    """With every probability under the hopeless threshold, the forecasts of the memorizing
    phase, and of the grokking phase (test accuracy rising), still say "not hopeless"; the
    others from memorization on do."""
    from grokwatch.decision import Phase

    base, _ = replays
    model, _ = fit_replays(base, folds=2, C_grid=(1.0,), params=FAST)
    model.hopeless_threshold_ = 1.0
    model.alert_threshold_ = 1.0
    early, rising, late = [], [], []
    for r in base[:6]:
        assert r.t_mem is not None
        for s, f in zip(r.steps, r.forecasts(model), strict=True):
            if f.confidence < 0.5 or (r.t_grok is not None and s >= r.t_grok):
                continue  # confident and under the threshold: only the phase decides
            if s < r.t_mem:
                early.append(f)
            elif f.phase is Phase.GROKKING:
                rising.append(f)
            else:
                late.append(f)
    assert early and not any(f.hopeless for f in early)
    assert rising and not any(f.hopeless for f in rising)
    assert late and all(f.hopeless for f in late)


def test_evaluate_lofo_on_some_measures_only(runs, tmp_path):
    """``measures``: the models are fitted and judged on those measures alone, so the
    features of the other measures carry no weight in any fold model."""
    from grokwatch.forecast.commands import evaluate_lofo
    from grokwatch.forecast.features import FEATURE_NAMES

    corpus = _write_corpus(runs, tmp_path / "corpus")
    result = evaluate_lofo(
        [corpus],
        out=None,
        folds=2,
        params=FAST,
        measures=MINIMAL_MEASURES,
        say=lambda _: None,
    )
    assert result["settings"]["measures"] == list(MINIMAL_MEASURES)
    assert set(result["families"]) == {"alpha", "beta"}
    norm = FEATURE_NAMES.index("weight_norm_log_slope")
    test = FEATURE_NAMES.index("test_accuracy")
    for model in result["models"].values():
        assert model.feature_weight_[norm] == 0.0
        assert model.feature_weight_[test] > 0.0
    # the baselines are judged on every measure of the runs: the weight norm (which the
    # forecaster may not read here) still ranks the synthetic grokkers, whose norm falls
    weight_norm = [
        d["groups"]["overall"]["signals"]["weight_norm_rate"]["matched"]["auroc_25"]
        for d in result["details"].values()
    ]
    assert max(abs(a - 0.5) for a in weight_norm) > 0.1, weight_norm


def test_hopeless_summary_counts_grokkers_and_what_the_calls_save(replays):
    """The grokkers called hopeless before t_grok, and the never-grokking runs called hopeless
    within their budget with their first call as a share of the budget."""
    from grokwatch.forecast.lofo import _hopeless

    base, _ = replays
    model, _ = fit_replays(base, folds=2, C_grid=(1.0,), params=FAST)
    model.alert_threshold_ = 1.0
    model.hopeless_threshold_ = 0.0  # never hopeless (P <= 0 only when spent)
    none = _hopeless(base, forecasts_of(model, base))
    assert none["n_hopeless_grokking"] == 0 and none["hopeless_grokking"] == 0.0
    model.hopeless_threshold_ = 1.0  # hopeless wherever the phase allows it
    fc = forecasts_of(model, base)
    every = _hopeless(base, fc)
    neg = [r for r in base if r.outcome in ("memorization", "confusion")]
    pos = [r for r in base if r.outcome == "grokking" and r.t_grok is not None]
    assert neg and pos

    def calls(r, before):
        return [s for s, f in zip(r.steps, fc[r.run_id], strict=True) if f.hopeless and before(s)]

    ever = [bool(calls(r, lambda s, r=r: s < r.t_grok)) for r in pos]
    assert every["hopeless_grokking"] == pytest.approx(np.mean(ever))
    called = [calls(r, lambda s, r=r: s <= r.budget) for r in neg]
    assert every["hopeless_negative"] == pytest.approx(np.mean([bool(c) for c in called]))
    firsts = [c[0] / r.budget for c, r in zip(called, neg, strict=True) if c]
    assert every["hopeless_first_budget"] == pytest.approx(float(np.median(firsts)))
    assert 0.0 < every["hopeless_first_budget"] <= 1.0


def test_the_baseline_table_takes_a_family_without_baselines():
    """A held-out family with no baseline numbers gets dashes, and the macro row averages each
    baseline over the families that have it."""
    from grokwatch.forecast.lofo import _baselines

    ours = {"recall_far05": 0.9, "lead_gap_all_far05": 0.5, "far_far05": 0.04}
    result = {
        "families": {
            "a": {**ours, "baselines_far05": {"norm": {"recall": 0.4, "lead_gap_all": 0.2}}},
            "b": dict(ours),
        },
        "macro": ours,
    }
    lines = _baselines(result)
    assert lines[-3].startswith("| a | 0.90 / 0.50 | 0.04 | 0.40 / 0.20 |")
    assert lines[-2] == "| b | 0.90 / 0.50 | 0.04 | — |"
    assert lines[-1].startswith("| **macro average** |") and "0.40 / 0.20" in lines[-1]
