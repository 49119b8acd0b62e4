"""What ``grokwatch fit`` and ``grokwatch evaluate`` do (the CLI only parses arguments).

The corpus is read with ``trainer.corpus.load`` (the corpus format's own reader, shipped in
the same distribution).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from grokwatch.forecast.evaluate import evaluate, format_table
from grokwatch.forecast.forecaster import GrokForecaster
from grokwatch.forecast.replay import (
    DEFAULT_GRID,
    NEGATIVE,
    POSITIVE,
    Replay,
    architecture_family,
    evaluations,
    raw_measures,
    replay,
    with_family,
)
from grokwatch.forecast.training import HOPELESS_MISS, RECIPE, FitReport, fit_corpus

__all__ = [
    "evaluate_corpus",
    "evaluate_lofo",
    "fit_model",
    "fit_report",
    "fit_sample",
    "fitting_runs",
    "pick_timelines",
]

Say = Callable[[str], None]

AGENT_DEFAULTS = "agent defaults"
"""The leave-one-family-out view at the agent's default settings (grid and overhead cap)."""


def _load_corpus(directory: str | Path, split: str | Sequence[str]) -> Any:
    from trainer.corpus import load

    return load(directory, split=split)


def fit_model(
    corpus: str | Path,
    out: str | Path,
    *,
    split: str = RECIPE.split,
    folds: int = RECIPE.folds,
    far: float = RECIPE.far,
    C_grid: Sequence[float] = RECIPE.C_grid,
    classifier: str = RECIPE.classifier,
    cadences: Sequence[int] = RECIPE.cadences,
    fold_by: str = RECIPE.fold_by,
    calibrate: str = RECIPE.calibrate,
    measures: Sequence[str] | None = RECIPE.measures,
    n_trees: int = RECIPE.n_trees,
    learning_rate: float = RECIPE.learning_rate,
    budget_samples: int = RECIPE.budget_samples,
    cap: int | None = RECIPE.cap,
    seed: int = RECIPE.seed,
    say: Say = print,
) -> tuple[GrokForecaster, dict[str, Any]]:
    """Fit on the ``split`` runs of ``corpus`` (one directory or several, comma-separated;
    comma-separated splits: all of them) and save the model to ``out``. Every default is
    :data:`~.training.RECIPE`'s, so ``fit_model(corpus, out)`` on the corpora of the shipped
    model fits it again. ``fold_by`` and ``calibrate`` as in :func:`~.training.fit_replays`;
    ``measures``: fit on these measures of every run only (``None``: all of them); ``cap``: at
    most this many runs of each family (a seeded sample, :func:`sample_families`; ``None``:
    all)."""
    from grokwatch.forecast.io import save
    from grokwatch.forecast.lofo import minimal_run

    splits = [s for s in split.split(",") if s]
    runs = [r for c in str(corpus).split(",") if c for r in _load_corpus(c, splits)]
    runs = sample_families([r for r in runs if r.labels.get("outcome")], cap, seed)
    if measures is not None:
        runs = [minimal_run(r, measures) for r in runs]
    if not runs:
        raise ValueError(f"no finished runs with split {split!r} in {corpus}")
    t0 = time.perf_counter()
    model, report = fit_corpus(
        runs,
        folds=folds,
        fold_by=fold_by,
        calibrate=calibrate,
        far=far,
        C_grid=C_grid,
        extra_cadences=cadences,
        seed=seed,
        budget_samples=budget_samples,
        params={"classifier": classifier, "n_trees": n_trees, "learning_rate": learning_rate},
        log=say,
    )
    info = {**report.to_json(), "corpus": str(corpus), "split": split, "seed": seed}
    info["measures"] = None if measures is None else list(measures)
    info["C_grid"] = list(C_grid)
    info["far"] = far
    info["families"] = sorted({architecture_family(r) for r in runs})
    info["calibrate"] = calibrate
    info["cap_per_family"] = cap
    info["budget_samples"] = budget_samples
    info["cadences"] = list(cadences)
    info["fit_seconds"] = round(time.perf_counter() - t0, 1)
    save(model, out, report=info)
    oof = report.oof
    say(
        f"fitted on {report.n_runs} runs ({report.n_groups} configurations, {report.n_rows} rows), "
        f"C={report.C}; out-of-fold at the chosen threshold: recall {oof['recall']:.2f}, "
        f"false alarms {oof['false_alarm_rate']:.2f}, median lead "
        f"{oof['median_lead_fraction']:.2f} of the gap, AUROC at 25 % of the gap "
        f"{oof['auroc_25']:.2f}"
    )
    say(f"wrote {out}")
    return model, info


def _group_name(r: Replay) -> Replay:
    if r.split == "heldout":
        return dataclasses.replace(r, family=f"{r.family}-heldout")
    return r


def pick_timelines(runs: Sequence[Replay], per_family: int = 3) -> list[Replay]:
    """A few runs per family for timeline figures: grokking runs at the 25th/50th/75th
    percentile of the gap, then one negative run."""
    chosen: list[Replay] = []
    for fam in sorted({r.family for r in runs}):
        pos = sorted(
            (r for r in runs if r.family == fam and r.outcome in POSITIVE),
            key=lambda r: (r.gap or 0, r.run_id),
        )
        for q in (0.25, 0.5, 0.75)[: max(per_family - 1, 1)]:
            if pos:
                r = pos[min(int(q * len(pos)), len(pos) - 1)]
                if r not in chosen:
                    chosen.append(r)
        neg = sorted(
            (r for r in runs if r.family == fam and r.outcome in NEGATIVE), key=lambda r: r.run_id
        )
        if neg:
            chosen.append(neg[len(neg) // 2])
    return chosen


def evaluate_corpus(
    corpus: str | Path,
    *,
    model: GrokForecaster,
    out: str | Path | None,
    splits: Sequence[str] = ("eval", "heldout"),
    calibration_split: str = "train",
    cadence: int | None = None,
    timelines: int = 3,
    plots: bool = True,
    say: Say = print,
) -> dict[str, Any]:
    """Replay, evaluate, print the tables, write JSON and figures (see :mod:`.evaluate`).

    Raises :class:`~grokwatch.exceptions.ConfigError` when runs of ``splits`` are runs
    ``model`` was fitted on (:func:`fitting_runs`): the numbers would be in-sample. The
    shipped model is fitted on every split of its corpora, so it is judged on families it
    never saw with :func:`evaluate_lofo` instead."""
    evaluated = {
        split: [r for r in _load_corpus(corpus, split) if r.labels.get("outcome")]
        for split in splits
    }
    _refuse_in_sample(model, corpus, evaluated)
    calib_runs = list(_load_corpus(corpus, calibration_split))
    calib = [replay(r, cadence=cadence) for r in calib_runs if r.labels.get("outcome")]
    say(f"calibration: {len(calib)} {calibration_split} runs")
    results: dict[str, Any] = {
        "model": {
            "alert_threshold": model.alert_threshold_,
            "hopeless_threshold": model.hopeless_threshold_,
            "horizon": model.horizon,
            "fit_report": getattr(model, "fit_report_", {}),
        },
        "cadence": cadence,
        "calibration_split": calibration_split,
    }
    out_dir = None if out is None else Path(out)
    text: list[str] = []
    for split in splits:
        runs = [_group_name(replay(r, cadence=cadence)) for r in evaluated[split]]
        if not runs:
            say(f"no {split} runs in {corpus}")
            continue
        res = evaluate(model, runs, calib, log=say)
        results[split] = res
        for view in ("calibrated", "matched", "fixed"):
            text.append(f"\n## {split} runs, {view} thresholds\n" + format_table(res, view=view))
        text.append(_claims_text(res["claims"]))
        say("\n".join(text[-4:]))
        if out_dir is not None and plots:
            from grokwatch.forecast.evaluate import our_signal
            from grokwatch.forecast.plots import lead_vs_far, timeline

            for group, info in res["groups"].items():
                lead_vs_far(
                    res,
                    out_dir / f"lead_vs_far_{split}_{group}.png",
                    group=group,
                    title=f"{split} runs: {group} ({info['n_runs']} runs)",
                )
            sig = our_signal(model, runs)
            for r in pick_timelines(runs, timelines):
                timeline(
                    r,
                    sig.forecasts[r.run_id] if sig.forecasts else [],
                    out_dir / "timelines" / f"{split}_{r.family}_{r.run_id}.png",
                    threshold=model.alert_threshold_,
                )
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        name = "evaluation" if cadence is None else f"evaluation_cadence{cadence}"
        (out_dir / f"{name}.json").write_text(json.dumps(_json_safe(results), indent=1) + "\n")
        (out_dir / f"{name}.md").write_text("\n".join(text) + "\n")
        say(f"wrote {out_dir / name}.json and .md")
    return results


def fitting_runs(report: Mapping[str, Any], corpus: str | Path) -> tuple[set[str], bool] | None:
    """The ids of the runs of ``corpus`` that a model with the fit report ``report`` (its
    ``fit_report_``, as :func:`fit_model` saves it) was fitted on, and whether that set is
    exact; ``None`` when the report names neither a corpus nor families (nothing to tell by).
    A fold model of :func:`evaluate_lofo` names only its families (it was fitted on every
    split of its corpora): every run of those families in ``corpus`` counts.

    The fit is retraced from the report: the labelled runs of its ``split`` in its
    ``corpus`` directories (a recorded directory that does not exist from here stands for
    ``corpus`` when their names agree), of its ``families``, sampled as :func:`fit_model`
    samples them (``cap_per_family``, ``seed``). When that does not give its ``n_runs`` runs
    (the corpus changed, or a directory was not found), every run of those splits and
    families counts, and the set is not exact."""
    dirs = [Path(c) for c in str(report.get("corpus") or "").split(",") if c]
    families = report.get("families")
    if not dirs:
        if not families:
            return None
        runs = _load_corpus(corpus, ("train", "eval", "heldout"))
        return {r.run_id for r in runs if architecture_family(r) in families}, False
    target = Path(corpus)
    found = [d if d.is_dir() else target for d in dirs if d.is_dir() or d.name == target.name]
    if not any(d.resolve() == target.resolve() for d in found):
        return set(), True
    runs, sample = fit_sample(report, found)
    if len(found) == len(dirs) and len(sample) == report.get("n_runs"):
        return {r.run_id for r in sample}, True
    return {r.run_id for r in runs}, False


def fit_sample(
    report: Mapping[str, Any], directories: Sequence[str | Path]
) -> tuple[list[Any], list[Any]]:
    """The fit of a fit report (``fit_report_``, as :func:`fit_model` saves it) drawn again
    from ``directories``: every labelled run of its ``split`` and ``families`` there, and the
    sample of them :func:`fit_model` fits on (``cap_per_family``, ``seed``)."""
    splits = [s for s in str(report.get("split") or "train").split(",") if s]
    runs = [r for d in directories for r in _load_corpus(d, splits) if r.labels.get("outcome")]
    families = report.get("families")
    if families is not None:
        runs = [r for r in runs if architecture_family(r) in families]
    return runs, sample_families(runs, report.get("cap_per_family"), int(report.get("seed") or 0))


def _refuse_in_sample(
    model: GrokForecaster, corpus: str | Path, evaluated: Mapping[str, Sequence[Any]]
) -> None:
    """Raise when runs of ``evaluated`` (split -> runs of ``corpus``) fitted ``model``."""
    from grokwatch.exceptions import ConfigError

    report = getattr(model, "fit_report_", None) or {}
    fold_model = not report.get("corpus") and bool(report.get("families"))
    split = report.get("split") or ("train,eval,heldout" if fold_model else "train")
    fit_splits = {s for s in str(split).split(",") if s}
    if not fit_splits & set(evaluated):
        return
    fitted = fitting_runs(report, corpus)
    if fitted is None:
        return
    ids, exact = fitted
    n_runs = sum(len(runs) for runs in evaluated.values())
    overlap = [r.run_id for runs in evaluated.values() for r in runs if r.run_id in ids]
    if not overlap:
        return
    how = (
        ""
        if exact
        else " (its report names only its families, so every run of them counts)"
        if fold_model
        else " (its sample could not be retraced from this corpus, so every run of its splits "
        "and families counts)"
    )
    raise ConfigError(
        f"{len(overlap)} of the {n_runs} runs to evaluate ({','.join(evaluated)} of {corpus}) "
        f"are runs the model was fitted on{how}: its fit report says corpus "
        f"{report.get('corpus')}, split {split}, families {report.get('families')}, "
        f"{report.get('n_runs')} runs, so the numbers would be in-sample. Judge it on families "
        "it never saw with `grokwatch evaluate --lofo`, or evaluate a model fitted without "
        "these runs (e.g. `grokwatch fit --split train`) or other splits (--split)"
    )


def _claims_text(claims: dict[str, Any]) -> str:
    mc = claims["mc_dropout_peak_before_t_grok"]
    se = claims["spectral_entropy_below_0.609"]
    lines = [
        f"\nMC-dropout variance peak before t_grok in {mc['fraction_before']:.0%} of "
        f"{mc['n']} grokking runs (median {mc['median_lead_fraction']:.2f} of the gap before); "
        f"spectral entropy < 0.609 before t_grok in {se['grokking_before_t_grok']:.0%} of "
        f"grokking runs and ever in {se['negatives_ever']:.0%} of runs that do not grok"
    ]
    for key, v in claims.items():
        if key.startswith("change_point_"):
            lines.append(
                f"{key}: {v['fraction']:.0%} of {v['n']} grokking runs, median lead "
                f"{v['median_lead_fraction']:.2f} of the gap"
            )
    return "\n".join(lines)


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "item"):
        return _json_safe(x.item())
    return x


def evaluate_lofo(
    corpora: Sequence[str | Path],
    *,
    out: str | Path | None,
    cadence: int | None = None,
    cadences: Sequence[int] = RECIPE.cadences,
    view_cadences: Sequence[int] = (500,),
    folds: int = RECIPE.folds,
    fold_by: str = RECIPE.fold_by,
    calibrate: str = RECIPE.calibrate,
    far: float = RECIPE.far,
    C_grid: Sequence[float] = RECIPE.C_grid,
    params: dict[str, Any] | None = None,
    measures: Sequence[str] | None = RECIPE.measures,
    budget_samples: int = RECIPE.budget_samples,
    cap: int | None = RECIPE.cap,
    shipped: GrokForecaster | None = None,
    plots: bool = True,
    name: str = "lofo",
    seed: int = RECIPE.seed,
    fold_models: Sequence[GrokForecaster] | None = None,
    say: Say = print,
) -> dict[str, Any]:
    """``grokwatch evaluate --lofo``: leave one family out over the runs of ``corpora`` (one
    or more corpus directories; a family may span several), see :mod:`.lofo`, each fold
    fitted with the settings of :data:`~.training.RECIPE` unless told otherwise (``params``:
    the :class:`GrokForecaster` hyperparameters, ``None``: ``RECIPE.params``). ``cadence``
    thins the evaluated runs (fitting always uses every cadence); ``view_cadences`` (each
    one of ``cadences``) are evaluated too, with the same models, when ``cadence`` is not
    given (by default 500 steps, the agent's default cadence); ``measures``: fit and
    evaluate on these measures of every run only (``None``: all of them; the recipe's are
    :data:`.lofo.MINIMAL_MEASURES`, the ones every family has); ``shipped`` (a fitted
    model) is also scored on the families it was not fitted on; ``cap``: at most
    this many runs of each family (a seeded sample). Runs are held out by
    :func:`~.replay.architecture_family`; the held-out runs are also judged at the agent's
    default settings (view :data:`AGENT_DEFAULTS`: the evaluations of the default grid that
    the 1 % overhead cap leaves, :func:`~.replay.thin`). ``fold_models``: models of an earlier
    run of the same settings (its ``NAME/models``), used instead of fitting -- each must
    have been fitted on exactly the fold's training runs (:func:`_saved_fold`). Writes
    ``NAME.json``, ``NAME.md``, ``NAME/reliability_FAMILY.png`` and the fold models
    ``NAME/models/FAMILY.npz`` (fitted without FAMILY) to ``out``."""
    from functools import partial

    from grokwatch.forecast.lofo import format_lofo, lofo_folds, minimal_run, run_lofo, summary_line

    params = RECIPE.params if params is None else params
    origin = {}  # run id -> the corpus directory it came from
    runs = []
    for c in corpora:
        for r in _load_corpus(c, ("train", "eval", "heldout")):
            origin[r.run_id] = str(Path(c))
            runs.append(r)
    runs = sample_families([r for r in runs if r.labels.get("outcome")], cap, seed)
    if not runs:
        raise ValueError(f"no labelled runs in {', '.join(map(str, corpora))}")
    t0 = time.perf_counter()
    minimal = {r.run_id: with_family(replay(minimal_run(r), cadence=cadence), r) for r in runs}
    full_runs = runs
    if measures is not None:  # fitted and judged on these measures only
        runs = [minimal_run(r, measures) for r in runs]

    def rep(r: Any, c: int | str | None = None) -> Replay:
        """``r`` replayed; the baselines keep every measure of the run (``--measures``
        restricts what the forecaster reads, not what the baselines are judged on)."""
        out = with_family(replay(r, cadence=c), r)
        if measures is not None:
            out.measures = raw_measures(r.run, evaluations(r.run, c))
        return out

    base = [rep(r) for r in runs]
    extra = [rep(r, c) for r in runs for c in cadences]
    test = (
        {r.run_id: r for r in base}
        if cadence is None
        else {r.run_id: rep(r, cadence) for r in runs}
    )
    say(f"replayed {len(runs)} runs in {time.perf_counter() - t0:.0f} s")
    folds_ = [
        dataclasses.replace(f, test=tuple(test[r.run_id] for r in f.test))
        for f in lofo_folds(base, extra)
    ]
    fit: Callable[[Sequence[Replay], Sequence[Replay]], GrokForecaster] = partial(
        _fit_fold, folds=folds, fold_by=fold_by, calibrate=calibrate, far=far, C_grid=C_grid,
        params=params, seed=seed, say=say, budget_samples=budget_samples,
    )  # fmt: skip
    if fold_models is not None:
        fit = partial(_saved_fold, list(fold_models))
    views = {
        f"cadence {c}": {r.run_id: r for r in extra if r.cadence == c}
        for c in view_cadences
        if c in cadences and cadence is None
    }
    if cadence is None:
        views[AGENT_DEFAULTS] = {r.run_id: rep(r, DEFAULT_GRID) for r in runs}
    result = run_lofo(folds_, fit=fit, minimal=minimal, views=views, rename=_group_name, log=say)
    models = result.pop("models")  # not JSON; handed back at the end
    result["settings"] = {
        "corpora": [str(c) for c in corpora],
        "cadence": cadence,
        "fit_cadences": list(cadences),
        "folds": folds,
        "fold_by": fold_by,
        "calibrate": calibrate,
        "far": far,
        "C_grid": list(C_grid),
        "params": dict(params),
        "measures": None if measures is None else list(measures),
        "hopeless_miss": HOPELESS_MISS,
        "budget_samples": budget_samples,
        "cap_per_family": cap,
        "seed": seed,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if shipped is not None:  # on every measure of the runs, as it was fitted
        ship_folds, ship_views = folds_, views
        if measures is not None:
            full = {r.run_id: with_family(replay(r, cadence=cadence), r) for r in full_runs}
            ship_folds = [
                dataclasses.replace(f, test=tuple(full[r.run_id] for r in f.test)) for f in folds_
            ]
            ship_views = {
                name: {
                    r.run_id: with_family(replay(r, cadence=_view_cadence(name)), r)
                    for r in full_runs
                }
                for name in views
            }
        result["shipped"] = _score_shipped(
            shipped, ship_folds, minimal, ship_views, say, origin=origin
        )
    text = format_lofo(result)
    say(text)
    if out is not None:
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{name}.json").write_text(json.dumps(_json_safe(result), indent=1) + "\n")
        (out_dir / f"{name}.md").write_text(text + "\n")
        if plots:
            from grokwatch.forecast.plots import reliability_diagram

            for fam, s in result["families"].items():
                curves = {"leave-one-family-out": s["reliability"]}
                ship = (result.get("shipped") or {}).get("families", {}).get(fam)
                if ship:
                    curves["shipped"] = ship["reliability"]
                reliability_diagram(
                    curves,
                    out_dir / name / f"reliability_{fam}.png",
                    title=f"held-out family {fam}: P(grok within budget)",
                )
        from grokwatch.forecast.io import save

        for fam, model in models.items():  # the fold models, for checks without refitting
            save(model, out_dir / name / "models" / f"{fam}.npz", report=model.fit_report_)
        say(f"wrote {out_dir / name}.json and .md")
    for fam, s in result["families"].items():
        say(summary_line(fam, s))
    result["models"] = models
    return result


def _view_cadence(name: str) -> int | str:
    """The cadence of a view named ``cadence N`` or :data:`AGENT_DEFAULTS`."""
    return DEFAULT_GRID if name == AGENT_DEFAULTS else int(name.split()[-1])


def sample_families(runs: Sequence[Any], cap: int | None, seed: int = 0) -> list[Any]:
    """At most ``cap`` runs of each family (:func:`~.replay.architecture_family`), a seeded
    sample (all runs when ``cap`` is ``None``)."""
    if cap is None:
        return list(runs)

    rng = np.random.default_rng(seed)
    out: list[Any] = []
    for fam in sorted({architecture_family(r) for r in runs}):
        mine = sorted((r for r in runs if architecture_family(r) == fam), key=lambda r: r.run_id)
        if len(mine) > cap:
            keep = np.sort(rng.choice(len(mine), size=cap, replace=False))
            mine = [mine[i] for i in keep]
        out += mine
    return out


def _fit_fold(
    train: Sequence[Replay], extra: Sequence[Replay], *, say: Say, **options: Any
) -> GrokForecaster:
    from grokwatch.forecast.training import fit_replays

    t0 = time.perf_counter()
    model, report = fit_replays(train, extra, log=say, **options)
    model.fit_report_ = fit_report(report, train, time.perf_counter() - t0)
    return model


def fit_report(
    report: FitReport, train: Sequence[Replay], seconds: float, **added: Any
) -> dict[str, Any]:
    """What a fold model of :func:`evaluate_lofo` keeps as its ``fit_report_``: ``report``
    (with what an ablation ``added``), the families it was fitted on (:func:`_saved_fold` finds
    it by them) and how long the fit took."""
    return {
        **report.to_json(),
        **added,
        "families": sorted({r.family for r in train}),
        "fit_seconds": round(seconds, 1),
    }


def _saved_fold(
    models: Sequence[GrokForecaster], train: Sequence[Replay], extra: Sequence[Replay]
) -> GrokForecaster:
    """The saved fold model fitted on exactly ``train``'s families and number of runs."""
    families = sorted({r.family for r in train})
    for model in models:
        report = getattr(model, "fit_report_", {}) or {}
        if report.get("families") == families and report.get("n_runs") == len(train):
            return model
    raise ValueError(f"no saved fold model was fitted on {families} ({len(train)} runs)")


def _score_shipped(
    model: GrokForecaster,
    folds: Sequence[Any],
    minimal: dict[str, Replay],
    views: dict[str, dict[str, Replay]],
    say: Say,
    *,
    origin: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The shipped model on every family none of its fitting runs came from (and on the
    ``views`` of them, under ``"views"``)."""
    from grokwatch.forecast.evaluate import evaluate
    from grokwatch.forecast.lofo import family_summary, forecasts_of, minimal_summary, summary_line

    report = getattr(model, "fit_report_", {}) or {}
    fitted_on = report.get("families")
    if fitted_on is None:  # models of before: fitted on one split of one corpus
        split = report.get("split", "train")
        home = str(Path(report["corpus"])) if report.get("corpus") else None
        fitted_on = sorted(
            {
                r.family
                for f in folds
                for r in f.test
                if r.split == split and (home is None or (origin or {}).get(r.run_id) == home)
            }
        )
    out: dict[str, Any] = {"fitted_on": list(fitted_on), "families": {}, "views": {}}
    for fold in folds:
        if fold.family in fitted_on:
            continue
        test = [_group_name(r) for r in fold.test]
        res = evaluate(model, test, (), baselines=())
        summary = family_summary(test, forecasts_of(model, test), res)
        small = [_group_name(minimal[r.run_id]) for r in fold.test if r.run_id in minimal]
        summary["minimal"] = minimal_summary(model, small)
        out["families"][fold.family] = summary
        say("shipped model, " + summary_line(fold.family, summary))
        for name, view in views.items():
            test_v = [_group_name(view[r.run_id]) for r in fold.test if r.run_id in view]
            res_v = evaluate(model, test_v, (), baselines=())
            fams = out["views"].setdefault(name, {"families": {}})["families"]
            fams[fold.family] = family_summary(test_v, forecasts_of(model, test_v), res_v)
    return out
