"""Ablations of the forecaster: which design choices matter, on the training family's
out-of-fold forecasts and on the evaluation-only families.

Every variant is fitted as ``grokwatch fit`` fitted forecaster v1 (grouped 5-fold CV by
configuration on the ``train`` split, raw probabilities, thresholds on validation runs, one C)
and then evaluated like ``grokwatch evaluate``:

- ``shipped``: v1's defaults (boosted trees, tree time model, budget augmentation, cadences
  50/250/500);
- ``gam``: logistic regression on the spline basis + ridge time model instead of trees;
- ``no_augmentation``: without the smaller-budget copies of each row;
- ``no_budget``: the two budget features blanked (NaN) in fitting and evaluation -- how much
  of the forecast rests on knowing the budget, which the corpus derives from lr, wd and frac;
- ``no_changepoints``: the change-point features blanked.

The choices were made on the training family's cross-validation before the evaluation runs
were looked at; this table reports them on the evaluation runs after the fact.

    python benchmarks/forecast_ablations.py [--corpus trainer/data/corpus_v1]
        [--json benchmarks/results/forecast/ablations.json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import grokwatch.forecast.training as training
from grokwatch.forecast.commands import _json_safe
from grokwatch.forecast.evaluate import OURS, evaluate
from grokwatch.forecast.features import FEATURE_NAMES
from trainer.corpus import load

BUDGET = [FEATURE_NAMES.index(n) for n in training.BUDGET_FEATURES]
CHANGEPOINTS = [
    i for i, n in enumerate(FEATURE_NAMES) if "_cp_" in n or n == "change_points_since_mem"
]

VARIANTS: dict[str, dict[str, Any]] = {
    "shipped": {},
    "gam": {"params": {"classifier": "gam", "time_model": "ridge"}, "C": 0.3},
    "no_augmentation": {"budget_samples": 0},
    "no_budget": {"blank": BUDGET},
    "no_changepoints": {"blank": CHANGEPOINTS},
}


def blanking(columns: list[int]) -> Callable[..., training.Replay]:
    original = training.replay

    def replay(run: Any, **kw: Any) -> training.Replay:
        r = original(run, **kw)
        r.X[:, columns] = np.nan
        return r

    return replay


def main() -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="trainer/data/corpus_v1")
    ap.add_argument("--C", type=float, default=3.0, help="C of the tree variants")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--json", default="benchmarks/results/forecast/ablations.json")
    args = ap.parse_args()
    train = list(load(args.corpus, split="train"))
    evals = list(load(args.corpus, split="eval"))
    out: dict[str, Any] = {}
    original = training.replay
    for name in args.variants.split(","):
        v = VARIANTS[name]
        training.replay = blanking(v["blank"]) if "blank" in v else original
        t0 = time.perf_counter()
        model, report = training.fit_corpus(  # forecaster v1's settings, not today's recipe
            train,
            extra_cadences=(250, 500),
            fold_by="config",
            calibrate="none",
            C_grid=(v.get("C", args.C),),
            budget_samples=v.get("budget_samples", 2),
            params=v.get("params", {}),
        )
        runs = [training.replay(r) for r in evals if r.labels.get("outcome")]
        calib = [training.replay(r) for r in train if r.labels.get("outcome")]
        res = evaluate(model, runs, calib, baselines=())
        ours = res["groups"]["overall"]["signals"][OURS]
        out[name] = {
            "oof": report.oof,
            "eval_calibrated": ours["calibrated"],
            "eval_matched": ours["matched"],
            "per_family_auroc_25": {
                fam: g["signals"][OURS]["matched"]["auroc_25"] for fam, g in res["groups"].items()
            },
            "seconds": round(time.perf_counter() - t0, 1),
        }
        o, c, m = report.oof, ours["calibrated"], ours["matched"]
        print(
            f"{name:<16} OOF recall {o['recall']:.2f} FAR {o['false_alarm_rate']:.2f} "
            f"AUROC25 {o['auroc_25']:.2f} | eval calibrated recall {c['recall']:.2f} "
            f"FAR {c['false_alarm_rate']:.2f} | matched recall {m['recall']:.2f} lead-all "
            f"{m['median_lead_fraction_all']:.2f} | AUROC 10/25/50 {m['auroc_10']:.2f}/"
            f"{m['auroc_25']:.2f}/{m['auroc_50']:.2f} | t_grok err "
            f"{m['t_grok_median_rel_error']:.2f}",
            flush=True,
        )
    training.replay = original
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_json_safe(out), indent=1) + "\n")
        print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
