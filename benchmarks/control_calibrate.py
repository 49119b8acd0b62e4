"""Calibrate the run policy's hopeless threshold on the shipped forecaster's validation runs.

The shipped model (``grokwatch/forecast/model/grokforecaster.npz``) was fitted by
``grokwatch fit`` on the ``train`` split of ``trainer/data/corpus_v1`` with grouped 5-fold
cross-validation (:func:`grokwatch.forecast.training.fit_corpus`, C chosen = the model's C).
This script refits the same five out-of-fold models (same folds, same rows, same C), forecasts
every validation run at the corpus cadence (50 steps) and at the agent's cadences 250 and 500,
and writes, for every run that generalizes within its budget and for each ``(cadence,
patience, min_fraction)`` of the grid, the smallest hopeless threshold at which the policy's
stop rule (``patience`` consecutive confident evaluations with P(grok within budget) <= the
threshold, none in phase ``grokking``, at or after ``min_fraction`` of the budget, before
``t_grok``) would have stopped it. The lowest 10 % of these per cell go to
``grokwatch/forecast/model/policy_calibration.json``; :class:`grokwatch.RunPolicy` reads the
threshold for a risk ``r`` as the value just below the ``floor(r * n)``-th smallest.

    python -m benchmarks.control_calibrate            # ~5 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from grokwatch.decision import Phase
from grokwatch.forecast.features import FEATURE_NAMES
from grokwatch.forecast.forecaster import GrokForecaster
from grokwatch.forecast.io import load_default
from grokwatch.forecast.online import MIN_CONFIDENCE
from grokwatch.forecast.training import (
    BUDGET_FEATURES,
    _folds,
    replay,
    training_rows,
)
from grokwatch.policy import CALIBRATION_PATH, stop_statistic

CADENCES = (None, 250, 500)  # None: the corpus's own (50 steps)
PATIENCES = (1, 2, 3, 4, 5, 6)
MIN_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.5)
MAX_RISK = 0.1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="trainer/data/corpus_v1")
    ap.add_argument("--out", default=str(CALIBRATION_PATH))
    args = ap.parse_args()
    from trainer.corpus import load

    shipped = load_default()
    report = shipped.fit_report_
    runs = [r for r in load(args.corpus, split="train") if r.labels.get("outcome")]
    if len(runs) != report.get("n_runs"):
        raise SystemExit(
            f"the corpus has {len(runs)} train runs, the shipped model was fitted on "
            f"{report.get('n_runs')}: refit the model first"
        )
    t0 = time.perf_counter()
    base = [replay(r) for r in runs]
    coarse = {c: [replay(r, cadence=c) for r in runs] for c in CADENCES if c is not None}
    print(f"replayed {len(runs)} runs in {time.perf_counter() - t0:.0f} s", flush=True)
    groups = [r.group for r in base]
    k = max(2, min(int(report.get("folds", 5)), len(set(groups))))
    masks = _folds(groups, k, int(report.get("seed", 0)))
    fold_of = {}
    for f, mask in enumerate(masks):
        fold_of.update({r.run_id: f for r, inside in zip(base, mask, strict=True) if inside})
    everything = base + [r for rs in coarse.values() for r in rs]
    scale = 1.0 / (1 + len(coarse))
    time_features = [i for i, n in enumerate(FEATURE_NAMES) if n not in BUDGET_FEATURES]
    stats: dict[tuple[int, int, float], list[float]] = {}
    for f in range(k):
        train = [r for r in everything if fold_of[r.run_id] != f]
        X, y, w, t, _ = training_rows(train, budget_samples=2, seed=int(report.get("seed", 0)))
        model = GrokForecaster(
            C=shipped.C, time_features=time_features, classifier=shipped.classifier
        ).fit(X, y, sample_weight=w * scale, log_time_to_grok=t)
        for cadence in CADENCES:
            val = base if cadence is None else coarse[cadence]
            for r in val:
                if fold_of[r.run_id] != f or not r.groks or r.budget is None:
                    continue
                fc = r.forecasts(model)
                p = np.array([x.p_grok_budget for x in fc])
                sure = np.array([x.confidence >= MIN_CONFIDENCE for x in fc])
                grokking = np.array([c.phase is Phase.GROKKING for c in r.contexts])
                for patience in PATIENCES:
                    for frac in MIN_FRACTIONS:
                        s = stop_statistic(
                            r.steps, p, sure & ~grokking, r.t_grok, r.budget, patience, frac
                        )
                        stats.setdefault((cadence or 50, patience, frac), []).append(s)
        print(f"fold {f + 1}/{k} done at {time.perf_counter() - t0:.0f} s", flush=True)
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
        },
        "max_risk": MAX_RISK,
        "cells": cells,
    }
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out} ({len(cells)} cells) in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
