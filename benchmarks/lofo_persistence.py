"""Ablation: an alert that needs two evaluations in a row at P >= threshold, on the committed
leave-one-family-out run, its threshold recalibrated on the fitting families only.

The rule: alert at the first evaluation whose P(grok within budget) and the previous
evaluation's are both at or above the threshold (both confident). It is the one-evaluation
rule on the score ``min(P[i-1], P[i])``, so everything else carries over: a negative run's
largest such score before ``t_grok`` decides whether it would alarm, and the pooled
threshold is chosen on those scores exactly as the shipped rule chooses it on P.

The threshold must come from the fitting families' out-of-fold forecasts, as the shipped
threshold does (``grokwatch.forecast.training.fit_replays``, folds by family). A committed
fold model (``benchmarks/results/forecast/lofo/models``) keeps its threshold but not those
forecasts, so they are computed again: for held-out family F and fitting family G, the
inner model is fitted on the families other than F and G exactly as ``fit_replays`` fits it
(same runs in the same order, rows, weights, settings), so one model serves both (F, G) and
(G, F): 15 fits for six families. It reads the fold model's isotonic map, as the inner
models of the fit did. Two checks that this is the fit's own computation: the isotonic map
fitted on these out-of-fold forecasts must equal the fold model's, and the one-evaluation
threshold chosen on them must equal the fold model's threshold (both are reported).

The held-out family is forecast by its committed fold model (nothing refitted), at the
corpus's cadence, and judged with :func:`grokwatch.forecast.evaluate.metrics` under both rules.

**Adoption criterion** (written before any result was seen, as the protocol asks): the
two-evaluation rule is adopted only if, against the one-evaluation rule on the same fold
models, (a) more held-out families meet the recall goal (recall >= 0.9 with FAR <= 0.05), and
(b) no family whose FAR is <= 0.05 under one evaluation goes above 0.05 under two.

    GW_PAUSABLE=1 nice -n 19 python -m benchmarks.lofo_persistence \\
        --out benchmarks/results/forecast/lofo_ablations/persistence
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.lofo_near_miss import sampled_runs
from grokwatch.forecast.commands import _json_safe
from grokwatch.forecast.evaluate import Signal, family_refs, metrics, run_max
from grokwatch.forecast.features import FEATURE_NAMES
from grokwatch.forecast.forecaster import GrokForecaster
from grokwatch.forecast.io import load
from grokwatch.forecast.lofo import lofo_folds, minimal_run
from grokwatch.forecast.replay import (
    NEGATIVE,
    Replay,
    choose_alert_threshold,
    replay,
    with_family,
)
from grokwatch.forecast.training import (
    BUDGET_FEATURES,
    _isotonic_map,
    alert_scores,
    training_rows,
)

SOURCE = Path("benchmarks/results/forecast")


def persistent(score: np.ndarray, k: int) -> np.ndarray:
    """The score an alert on ``k`` evaluations in a row reads: the smallest of the last
    ``k`` scores (``-inf`` for the first ``k - 1`` evaluations)."""
    if k == 1:
        return score
    out = np.full(score.size, -np.inf)
    for i in range(k - 1, score.size):
        out[i] = score[i - k + 1 : i + 1].min()
    return out


def replays(settings: dict[str, Any]) -> tuple[list[Replay], list[Replay]]:
    """The committed run's replays, as ``evaluate_lofo`` made them: every run of its seeded
    sample (:func:`~benchmarks.lofo_near_miss.sampled_runs`) at its own cadence and its thinned
    copies (one per fitting cadence)."""
    runs = sampled_runs(settings)
    if settings["measures"] is not None:
        runs = [minimal_run(r, settings["measures"]) for r in runs]
    base = [with_family(replay(r), r) for r in runs]
    extra = [with_family(replay(r, cadence=c), r) for r in runs for c in settings["fit_cadences"]]
    return base, extra


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="source", type=Path, default=SOURCE)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--k", type=int, default=2, help="evaluations in a row (2)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    committed = json.loads((args.source / "lofo.json").read_text())
    settings = committed["settings"]
    if settings["C_grid"] != [1.0] or settings["fold_by"] != "family":
        raise SystemExit("this reconstruction covers C_grid [1.0] and folds by family only")
    if (settings.get("transfer") or {}).get("balance", "run") != "run":  # runs before 110b577
        raise SystemExit("this reconstruction covers balance 'run' only")
    models = {p.stem: load(p) for p in sorted((args.source / "lofo" / "models").glob("*.npz"))}
    base, extra = replays(settings)
    print(f"replayed {len(base)} runs in {time.perf_counter() - t0:.0f} s", flush=True)
    folds = lofo_folds(base, extra)
    time_features = [i for i, n in enumerate(FEATURE_NAMES) if n not in BUDGET_FEATURES]
    inner: dict[frozenset[str], GrokForecaster] = {}
    far = settings["far"]
    result: dict[str, Any] = {"families": {}, "settings": {**settings, "k": args.k}}
    for fold in folds:
        model = models[fold.family]
        everything = [*fold.train, *fold.extra]
        scale = len(fold.train) / len(everything)
        fitting = sorted({r.family for r in fold.train})
        oof: dict[str, np.ndarray] = {}
        pairs = []
        for g in fitting:
            key = frozenset((fold.family, g))
            if key not in inner:
                train = [r for r in everything if r.family != g]
                X, y, w, _, _ = training_rows(
                    train, budget_samples=settings["budget_samples"], seed=settings["seed"]
                )
                inner[key] = GrokForecaster(
                    C=1.0, time_features=time_features, **settings["params"]
                ).fit(X, y, sample_weight=w * scale)
                print(f"  fitted without {sorted(key)} ({len(inner)} of 15)", flush=True)
            m = inner[key]
            m.calibration_ = np.zeros((2, 0))  # raw, as in the fit (a reused model is mapped)
            pairs.append((m, [r for r in fold.train if r.family == g]))
        iso = _isotonic_map(pairs)
        same_map = bool(
            iso.shape == model.calibration_.shape and np.allclose(iso, model.calibration_)
        )
        for m, val in pairs:
            m.calibration_ = model.calibration_
            for r in val:
                oof[r.run_id] = alert_scores(r.forecasts(m))
        negatives = [r for r in fold.train if r.outcome in NEGATIVE]
        thresholds = {
            k: choose_alert_threshold(
                [run_max(r, persistent(oof[r.run_id], k)) for r in negatives], far
            )
            for k in (1, args.k)
        }
        test = list(fold.test)
        scores = {r.run_id: alert_scores(r.forecasts(model)) for r in test}
        refs = family_refs(test)
        entry: dict[str, Any] = {
            "check_isotonic_map_equal": same_map,
            "check_threshold_equal": thresholds[1] == model.alert_threshold_,
            "fold_model_threshold": model.alert_threshold_,
        }
        for k, thr in thresholds.items():
            sig = Signal(f"k={k}", {rid: persistent(s, k) for rid, s in scores.items()}, thr)
            got = metrics(test, sig, thr, refs)
            entry[f"k{k}"] = {
                "threshold": thr,
                "recall": got["recall"],
                "far": got["false_alarm_rate"],
                "lead_gap": got["median_lead_fraction"],
                "lead_gap_all": got["median_lead_fraction_all"],
                "n_grokking": got["n_grokking"],
                "n_negative": got["n_negative"],
                "recall_goal": got["recall"] >= 0.9 and got["false_alarm_rate"] <= 0.05,
            }
        result["families"][fold.family] = entry
        print(
            f"{fold.family}: checks map {same_map}, threshold {entry['check_threshold_equal']} "
            + "; ".join(
                f"k={k}: thr {entry[f'k{k}']['threshold']:.4f} recall "
                f"{entry[f'k{k}']['recall']:.2f} FAR {entry[f'k{k}']['far']:.2f} lead "
                f"{entry[f'k{k}']['lead_gap']:.2f}"
                for k in thresholds
            ),
            flush=True,
        )
    fams = result["families"].values()
    one, two = "k1", f"k{args.k}"
    met = {k: sum(f[k]["recall_goal"] for f in fams) for k in (one, two)}
    crossed = [
        fam for fam, f in result["families"].items() if f[one]["far"] <= 0.05 < f[two]["far"]
    ]
    result["macro"] = {
        k: {
            m: float(np.nanmean([f[k][m] for f in fams]))
            for m in ("threshold", "recall", "far", "lead_gap", "lead_gap_all")
        }
        for k in (one, two)
    }
    result["criterion"] = {
        "recall_goal_families": met,
        "far_crossed_0.05": crossed,
        "adopted": met[two] > met[one] and not crossed,
    }
    result["settings"]["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "persistence.json").write_text(json.dumps(_json_safe(result), indent=1) + "\n")
    print(json.dumps(_json_safe({k: result[k] for k in ("macro", "criterion")}), indent=1))


if __name__ == "__main__":
    main()
