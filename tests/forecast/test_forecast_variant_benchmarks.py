"""The ablation scripts that run leave one family out with a variant of the fit
(benchmarks/lofo_group_robust.py, benchmarks/lofo_conformal_interval.py, their runner
benchmarks/lofo_variant.py, benchmarks/lofo_default_grid.py) and the paired comparison of two
records (benchmarks/lofo_paired.py), on a small synthetic corpus of three families."""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import numpy as np
import pytest
from _forecast_synth import make_corpus
from _scripts import load_script

from grokwatch.forecast import io as model_io
from grokwatch.forecast.replay import replay
from grokwatch.forecast.training import fit_replays

OPTIONS = {"folds": 5, "fold_by": "family", "calibrate": "isotonic", "far": 0.05,
           "C_grid": (1.0,), "params": {"n_trees": 10}, "budget_samples": 1,
           "seed": 0}  # fmt: skip
"""fit_replays' options as the runner passes them, with few trees."""


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def runs():
    return [
        r
        for k, fam in enumerate(("alpha", "beta", "gamma"), start=1)
        for r in make_corpus(12, seed=k, family=fam)
    ]


@pytest.fixture(scope="module")
def replays(runs):
    return [replay(r) for r in runs], [replay(r, cadence=250) for r in runs]


def test_group_robust_weights_are_the_out_of_fold_losses_over_their_mean(replays):
    mod = load_script("benchmarks/lofo_group_robust.py", "lofo_group_robust_benchmark")
    base, extra = replays
    _, first = fit_replays(base, extra, **OPTIONS)
    losses = mod.family_log_loss(first)
    # the families' losses, each weighing its runs, pool to the loss fit_replays chose C by
    runs = {f: sum(r.family == f for r in base) for f in losses}
    pooled = sum(losses[f] * runs[f] for f in losses) / sum(runs.values())
    assert pooled == pytest.approx(first.cv_log_loss["1.0"], rel=1e-9)
    model, report, added = mod.fit_group_robust(base, extra, OPTIONS, _quiet)
    weights = added["family_weights"]
    assert added["family_log_loss"] == losses
    assert np.mean(list(weights.values())) == pytest.approx(1.0)
    assert max(weights.values()) - min(weights.values()) > 0.01  # not every family at 1
    for f in losses:
        assert weights[f] == pytest.approx(losses[f] / np.mean(list(losses.values())))
    assert sorted(weights, key=weights.get) == sorted(losses, key=losses.get)
    # the fold models and the model were fitted again, with those weights
    again, again_report = fit_replays(base, extra, family_weight=weights, **OPTIONS)
    X = np.concatenate([r.X for r in base])
    np.testing.assert_array_equal(model.predict_proba(X), again.predict_proba(X))
    assert report.alert_threshold == again_report.alert_threshold
    assert report.cv_log_loss == first.cv_log_loss  # the loss C was chosen by
    assert added["cv_log_loss_reweighted"] == again_report.cv_log_loss
    assert not np.allclose(report.fold_models[0].predict_proba(X),
                           first.fold_models[0].predict_proba(X))  # fmt: skip


def _conformal():
    return load_script("benchmarks/lofo_conformal_interval.py", "lofo_conformal_benchmark")


def test_conformal_level_is_the_weighted_quantile_of_the_shares():
    mod = _conformal()
    # family a: one run of four evaluations; b: two runs, of one and of three evaluations.
    # A run of a weighs 2, of b 1; a run's evaluations share its weight.
    shares = {
        "a": [np.array([0.1, 0.4, 0.7, 0.95])],
        "b": [np.array([0.2]), np.array([0.3, 0.5, 0.6])],
    }
    weight = {"a": 2.0, "b": 1.0}
    # weights: a's 1/2 each; b's 0.2 weighs 1, its 0.3, 0.5, 0.6 1/3 each. Cumulative over
    # the sorted shares (total 4): 0.5 1.5 1.83 2.33 2.67 3 3.5 4: the first to reach
    # 0.8 * 4 = 3.2 is 0.7 (each run weighing 1 would give 0.6: it reaches 2.5 of 3)
    assert mod.conformal_level(shares, weight) == 0.7
    assert mod.covered(shares, weight, 0.7) == pytest.approx(3.5 / 4)
    assert mod.covered(shares, weight, 0.6) == pytest.approx(3 / 4)
    even = {"a": 1.0, "b": 0.5}  # every family the same in total
    assert mod.conformal_level(shares, even) == 0.7
    assert mod.covered(shares, even, 0.6) == pytest.approx(1.5 / 2)
    heavy_b = {"a": 1.0, "b": 4.0}  # b's runs 4 each: 0.5 reaches 7.17 of 9, 0.6 8.5 > 7.2
    assert mod.conformal_level(shares, heavy_b) == 0.6
    # each family's own 80 % quantile: a 0.95 (3/4 < 0.8 <= 1), b 0.5 (1/2 + 2/6 = 0.83),
    # whatever the weights across families; the median of two is their mean
    for w in (weight, heavy_b):
        assert mod.conformal_level({"a": shares["a"]}, w) == 0.95
        assert mod.conformal_level({"b": shares["b"]}, w) == 0.5
        assert mod.conformal_level(shares, w, median=True) == pytest.approx(0.725)


def test_plateau_shares_run_from_t_mem_or_the_first_evaluation_to_t_grok():
    class Uniform:
        """F(u) = u / 5 on 0..5 log-steps (20 bins of 0.25, each 1/20)."""

        time_bin_width = 0.25

        def predict_time_cdf(self, X):
            return np.tile(np.arange(1, 21) / 20, (X.shape[0], 1))

    mod = _conformal()
    steps = np.array([100, 200, 300, 400, 1000, 1100])
    run = SimpleNamespace(groks=True, t_mem=300, t_grok=1000, steps=steps, X=np.zeros((6, 1)))
    (shares,) = mod.plateau_shares(Uniform(), [run])
    u = np.log(1000 / np.array([300, 400]))
    np.testing.assert_allclose(shares, np.abs(2 * u / 5 - 1), atol=1e-9)
    run.t_mem = None  # never memorized: from its first evaluation
    assert mod.plateau_shares(Uniform(), [run])[0].size == 4
    run.groks = False  # t_grok after the budget
    assert mod.plateau_shares(Uniform(), [run]) == []


def test_conformal_fit_sets_the_interval_from_the_fold_models_time_models(replays):
    mod = _conformal()
    base, extra = replays
    model, report, added = mod.fit_conformal(base, extra, OPTIONS, _quiet)
    assert added["check_fold_classifiers_equal"]
    assert np.isfinite(report.oof["t_grok_interval_coverage"])  # the fold models' time models
    assert model.interval == added["interval_level"] != 0.8
    # the level is the quantile it claims: of the shares recomputed here, a level interval
    # covers at least 80 % (every family weighing the same) and a narrower one less
    timed = mod.timed_fold_models(report, base, extra, OPTIONS)
    runs = {f: sum(r.family == f for r in base) for f in ("alpha", "beta", "gamma")}
    weight = {f: len(base) / (3 * n) for f, n in runs.items()}  # every family 1/3 in total
    shares = {}
    for f, m in enumerate(timed):
        val = [r for r in base if report.fold_of_run[r.run_id] == f]
        shares[val[0].family] = mod.plateau_shares(m, val)
        # |2F(u) - 1| <= a exactly when the model's central interval of level a covers t_grok
        r = next(r for r in val if r.t_mem is not None and mod.plateau_shares(m, [r]))
        plateau = np.flatnonzero((r.steps >= r.t_mem) & (r.steps < r.t_grok))
        j = int(np.argmin(np.abs(shares[val[0].family][0] - 0.5)))  # away from 0 and 1
        i, share = plateau[j], shares[val[0].family][0][j]
        assert 0.01 < share < 0.99
        for level, inside in ((share + 1e-6, True), (share - 1e-6, False)):
            m.interval = level
            _, low, high = m.predict_time(r.X[i : i + 1], r.steps[i : i + 1])
            assert (low[0] <= r.t_grok <= high[0]) == inside
    level = added["interval_level"]
    assert level == mod.conformal_level(shares, weight)
    assert mod.covered(shares, weight, level) >= 0.8
    assert mod.covered(shares, weight, np.nextafter(level, 0)) < 0.8
    assert added["interval_coverage_uncalibrated"] == pytest.approx(
        mod.covered(shares, weight, 0.8)
    )
    median = mod.fit_conformal(base, extra, OPTIONS, _quiet, median=True)[2]
    assert median["interval_level"] == pytest.approx(
        np.median(list(added["interval_level_family"].values()))
    )


def test_the_runner_writes_the_lofo_record_with_the_variant(runs, tmp_path):
    from trainer.corpus import register_spec, write_run

    corpus = tmp_path / "corpus"
    register_spec(corpus, {"name": "synth"}, "train")
    for r in runs:
        write_run(corpus, dict(r.meta), r.steps, r.columns, r.values)
    mod = load_script("benchmarks/lofo_group_robust.py", "lofo_group_robust_benchmark")
    out = tmp_path / "out"
    args = argparse.Namespace(corpus=str(corpus), measures="", cap=0, trees=10,
                              learning_rate=0.1, cadences="250", budget_samples=1,
                              out=out)  # fmt: skip
    mod.run(args, mod.fit_group_robust, {"name": "group_robust"}, say=_quiet)
    data = json.loads((out / "lofo.json").read_text())
    assert set(data["families"]) == {"alpha", "beta", "gamma"}
    assert data["settings"]["variant"] == {"name": "group_robust"}
    assert data["settings"]["cap_per_family"] is None and data["settings"]["measures"] is None
    assert (out / "lofo.md").read_text().startswith("| held-out family |")
    for fam in ("alpha", "beta", "gamma"):
        report = data["details"][fam]["model"]["fit_report"]
        assert fam not in report["families"] and set(report["family_weights"]) == set(
            report["families"]
        )
        saved = model_io.load(out / "lofo" / "models" / f"{fam}.npz")
        assert saved.fit_report_["family_weights"] == report["family_weights"]


def test_default_grid_fits_also_on_the_agents_default_schedule(runs, tmp_path, monkeypatch):
    """benchmarks/lofo_default_grid.py: the command's leave one family out with the agent's
    default schedule among the fit's cadences (each fold fits on more rows than with 500
    alone), the variant named in the record."""
    from trainer.corpus import register_spec, write_run

    corpus = tmp_path / "corpus"
    register_spec(corpus, {"name": "synth"}, "train")
    for r in runs:
        write_run(corpus, dict(r.meta), r.steps, r.columns, r.values)
    mod = load_script("benchmarks/lofo_default_grid.py", "lofo_default_grid_benchmark")
    monkeypatch.setattr("builtins.print", _quiet)
    rows = {}
    for cadences in ("500,default", "500"):
        out = tmp_path / cadences.replace(",", "-")
        argv = ["lofo_default_grid", "--corpus", str(corpus), "--measures", "", "--cap", "0",
                "--trees", "10", "--out", str(out)]  # fmt: skip
        if cadences == "500":
            argv += ["--cadences", "500"]
        monkeypatch.setattr("sys.argv", argv)
        mod.main()
        data = json.loads((out / "lofo.json").read_text())
        assert data["settings"]["fit_cadences"] == [500, "default"][: cadences.count(",") + 1]
        assert data["settings"]["variant"] == mod.VARIANT
        assert set(data["views"]) == {"cadence 500", "agent defaults"}
        rows[cadences] = {
            fam: data["details"][fam]["model"]["fit_report"]["n_rows"] for fam in data["families"]
        }
    assert set(rows["500"]) == {"alpha", "beta", "gamma"}
    for fam, n in rows["500"].items():
        assert rows["500,default"][fam] > n


def test_paired_comparison_of_two_records_of_the_same_runs(runs, tmp_path):
    """benchmarks/lofo_paired.py: a record against itself differs by nothing, whatever the
    draw; against another fit of the same runs the differences are the records' own, each with
    an interval; records of other runs, or fold models that do not give their record, are
    refused."""
    import shutil

    from grokwatch.cli import main as cli
    from trainer.corpus import register_spec, write_run

    corpus = tmp_path / "corpus"
    register_spec(corpus, {"name": "synth"}, "train")
    for r in runs:
        write_run(corpus, dict(r.meta), r.steps, r.columns, r.values)
    mod = load_script("benchmarks/lofo_paired.py", "lofo_paired_benchmark")
    common = ["evaluate", "--lofo", "--corpus", str(corpus), "--no-plots", "--model", "none"]
    for name, trees in (("a", "10"), ("b", "30")):
        assert cli([*common, "--trees", trees, "--out", str(tmp_path / name)]) == 0
    same = mod.compare(tmp_path / "a", tmp_path / "a", draws=40)
    for entry in [*same["families"].values(), same["macro"]]:
        for k, e in entry.items():
            assert e["difference"] in (0.0, None), k
            assert e["interval"] in ([0.0, 0.0], None) and e["decided"] in (False, None), k
    other = mod.compare(tmp_path / "a", tmp_path / "b", draws=40)
    a = json.loads((tmp_path / "a" / "lofo.json").read_text())
    b = json.loads((tmp_path / "b" / "lofo.json").read_text())
    assert set(other["families"]) == {"alpha", "beta", "gamma"}
    moved = 0
    for fam, entry in other["families"].items():
        for k, e in entry.items():
            if e["difference"] is None:
                continue
            assert e["difference"] == pytest.approx(b["families"][fam][k] - a["families"][fam][k])
            moved += e["difference"] != 0
            if e["interval"] is not None:
                lo, hi = e["interval"]
                assert lo <= hi and e["decided"] == (lo > 0 or hi < 0)
    assert moved  # the two fits differ somewhere
    # a record compared through its saved forecasts (as from another checkout): the same
    mod.save(tmp_path / "b", tmp_path / "b.pkl")
    assert mod.open_record(tmp_path / "b.pkl")[0] == tmp_path / "b"
    assert mod.compare(tmp_path / "a", tmp_path / "b.pkl", draws=40) == other
    # only the runs a smaller sample of the same corpus does not hold
    assert cli([*common, "--trees", "10", "--cap", "6", "--out", str(tmp_path / "small")]) == 0
    small = json.loads((tmp_path / "small" / "lofo.json").read_text())
    held = {f: s["n_runs"] for f, s in small["families"].items()}
    rest = mod.compare(tmp_path / "a", tmp_path / "b", draws=20, outside=tmp_path / "small")
    assert rest["outside"] == str(tmp_path / "small")
    assert rest["n_runs"] == {f: a["families"][f]["n_runs"] - held[f] for f in held}
    assert all(n > 0 for n in rest["n_runs"].values())
    # records of other runs
    settings = dict(b["settings"], seed=1)
    (tmp_path / "b" / "lofo.json").write_text(json.dumps(b | {"settings": settings}))
    with pytest.raises(SystemExit, match="seed"):
        mod.compare(tmp_path / "a", tmp_path / "b", draws=5)
    # a record whose fold models are not the ones that made it
    (tmp_path / "b" / "lofo.json").write_text(json.dumps(b))
    shutil.copytree(tmp_path / "b" / "lofo" / "models", tmp_path / "a" / "lofo" / "models",
                    dirs_exist_ok=True)  # fmt: skip
    with pytest.raises(SystemExit, match="in its record"):
        mod.compare(tmp_path / "a", tmp_path / "b", draws=5)


def test_a_records_replays_are_its_seeded_sample(runs, tmp_path):
    """benchmarks/lofo_persistence.py replays the runs of a record's own seeded sample (the
    runs ``lofo_near_miss.sampled_runs`` gives), not always seed 0's."""
    from trainer.corpus import register_spec, write_run

    corpus = tmp_path / "corpus"
    register_spec(corpus, {"name": "synth"}, "train")
    for r in runs:
        write_run(corpus, dict(r.meta), r.steps, r.columns, r.values)
    persistence = load_script("benchmarks/lofo_persistence.py", "lofo_persistence_benchmark")
    near_miss = load_script("benchmarks/lofo_near_miss.py", "lofo_near_miss_benchmark")
    ids = {}
    for seed in (0, 1):
        settings = {"corpora": [str(corpus)], "cap_per_family": 3, "seed": seed,
                    "measures": None, "fit_cadences": []}  # fmt: skip
        base, extra = persistence.replays(settings)
        ids[seed] = sorted(r.run_id for r in base)
        assert ids[seed] == sorted(r.run_id for r in near_miss.sampled_runs(settings))
        assert len(ids[seed]) == 9 and extra == []
    assert ids[0] != ids[1]
