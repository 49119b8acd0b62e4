"""Calibrate the run policy's hopeless threshold on the shipped forecaster's validation runs.

The shipped model (``grokwatch/forecast/model/grokforecaster.npz``) was fitted by
``grokwatch fit`` (:func:`grokwatch.forecast.training.fit_corpus`); its file carries the fit's
settings (corpora, splits, measures, per-family cap, inner folds, calibration, trees, budget
augmentation, seed). This script repeats that fit with the same settings -- same runs, same
folds, same rows, same ``C`` -- checks that it gives the shipped model's alert and hopeless
thresholds (so the out-of-fold models are the shipped model's), forecasts every validation run
with its fold's model at the corpus cadence (50 steps) and at the agent's cadences 250 and 500,
and writes, for every run that generalizes within its budget and for each ``(cadence,
patience, min_fraction)`` of the grid, the smallest hopeless threshold at which the policy's
stop rule (``patience`` consecutive confident evaluations with P(grok within budget) <= the
threshold, none in phase ``grokking``, at or after ``min_fraction`` of the budget, before
``t_grok``) would have stopped it. The lowest 10 % of these per cell go to
``grokwatch/forecast/model/policy_calibration.json``; :class:`grokwatch.RunPolicy` reads the
threshold for a risk ``r`` as the value just below the ``floor(r * n)``-th smallest.

    nice -n 10 python -m benchmarks.control_calibrate   # one fit of the shipped model's size
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from grokwatch.decision import Phase
from grokwatch.forecast.commands import fit_sample
from grokwatch.forecast.io import load_default
from grokwatch.forecast.lofo import minimal_run
from grokwatch.forecast.online import MIN_CONFIDENCE
from grokwatch.forecast.replay import replay, with_family
from grokwatch.forecast.training import fit_corpus
from grokwatch.policy import CALIBRATION_PATH, stop_statistic

CADENCES = (None, 250, 500)  # None: the corpus's own (50 steps)
PATIENCES = (1, 2, 3, 4, 5, 6)
MIN_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.5)
MAX_RISK = 0.1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--corpus",
        default=None,
        help="corpus directories, comma-separated (default: those the shipped model names)",
    )
    ap.add_argument("--out", default=str(CALIBRATION_PATH))
    args = ap.parse_args()
    shipped = load_default()
    report = shipped.fit_report_
    params = shipped.get_params()
    corpora = args.corpus or str(report["corpus"])
    _, runs = fit_sample(report, [c for c in corpora.split(",") if c])
    seed = int(report.get("seed", 0))
    if report.get("measures") is not None:
        runs = [minimal_run(r, report["measures"]) for r in runs]
    if len(runs) != report.get("n_runs"):
        raise SystemExit(
            f"the corpus has {len(runs)} runs for the shipped model's settings, it was fitted "
            f"on {report.get('n_runs')}: refit the model first"
        )
    t0 = time.perf_counter()
    model, fit = fit_corpus(
        runs,
        extra_cadences=report.get("cadences", (250, 500)),
        folds=int(report.get("folds", 5)),
        fold_by=report.get("fold_by", "config"),
        calibrate=report.get("calibrate", "none"),
        C_grid=(shipped.C,),
        budget_samples=int(report.get("budget_samples", 2)),
        seed=seed,
        params={k: params[k] for k in ("classifier", "n_trees", "learning_rate")},
    )
    same = math.isclose(model.alert_threshold_, shipped.alert_threshold_, rel_tol=1e-9)
    same &= math.isclose(model.hopeless_threshold_, shipped.hopeless_threshold_, rel_tol=1e-9)
    if not same:
        raise SystemExit(
            f"the refit's thresholds ({model.alert_threshold_}, {model.hopeless_threshold_}) "
            f"differ from the shipped model's ({shipped.alert_threshold_}, "
            f"{shipped.hopeless_threshold_}): not the same fit"
        )
    print(f"refitted the shipped model's folds in {time.perf_counter() - t0:.0f} s", flush=True)
    stats: dict[tuple[int, int, float], list[float]] = {}
    for cadence in CADENCES:
        for run in runs:
            fold = fit.fold_of_run.get(run.run_id)
            if fold is None:
                continue
            r = with_family(replay(run, cadence=cadence), run)
            if not r.groks or r.budget is None:
                continue
            fc = r.forecasts(fit.fold_models[fold])
            p = np.array([x.p_grok_budget for x in fc])
            sure = np.array([x.confidence >= MIN_CONFIDENCE for x in fc])
            grokking = np.array([c.phase is Phase.GROKKING for c in r.contexts])
            for patience in PATIENCES:
                for frac in MIN_FRACTIONS:
                    s = stop_statistic(
                        r.steps, p, sure & ~grokking, r.t_grok, r.budget, patience, frac
                    )
                    stats.setdefault((cadence or 50, patience, frac), []).append(s)
        print(f"cadence {cadence or 50} done at {time.perf_counter() - t0:.0f} s", flush=True)
    cells = []
    for (cadence, patience, frac), values in sorted(stats.items()):
        v = np.sort(np.asarray(values))
        keep = math.floor(MAX_RISK * v.size) + 1
        cells.append(
            {
                "cadence": cadence,
                "patience": patience,
                "min_fraction": frac,
                "n": int(v.size),
                "lowest": [None if not math.isfinite(x) else round(float(x), 6) for x in v[:keep]],
            }
        )
    out = {
        "about": (
            "Per (cadence, patience, min_fraction): the lowest hopeless-stop statistics of the "
            "validation runs that generalize within budget (see benchmarks/control_calibrate.py)"
        ),
        "model": {
            "alert_threshold": shipped.alert_threshold_,
            "hopeless_threshold": shipped.hopeless_threshold_,
            "n_runs": report.get("n_runs"),
            "corpus": report.get("corpus"),
            "split": report.get("split"),
            "families": report.get("families"),
            "fold_by": report.get("fold_by"),
        },
        "max_risk": MAX_RISK,
        "cells": cells,
    }
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out} ({len(cells)} cells) in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
