"""A leave-one-family-out run judged again with another alert-threshold rule, without refitting.

The alert threshold is the only thing a rule of :mod:`grokwatch.forecast.transfer` changes in
a fitted model, and the per-family rules (``family``, ``median``) need only the fitting
families' own thresholds, which every fold model's fit report records. So the fold models
of a committed run (``grokwatch evaluate --lofo`` writes them to ``OUT/lofo/models``), each
given the threshold the rule picks from its own report
(:func:`grokwatch.forecast.transfer.threshold_from_report`), are the models that
``--threshold-rule RULE`` would have fitted (a test checks that on a fit), and are scored on
the same runs with the same settings (read from the run's ``lofo.json``):

    nice -n 19 python -m benchmarks.lofo_threshold_rule --rule median \\
        --from benchmarks/results/forecast \\
        --out benchmarks/results/forecast/lofo_ablations/median_threshold

Nothing here sees a held-out family before its threshold is fixed: each fold's threshold
comes from its training families' out-of-fold forecasts, as in the run itself.

Without ``--rule`` the fold models keep their own thresholds: the committed run scored again
with the current code (e.g. its *agent defaults* view after a change to the agent's schedule):

    nice -n 19 python -m benchmarks.lofo_threshold_rule --from benchmarks/results/forecast \\
        --out benchmarks/results/forecast
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from grokwatch.forecast.commands import evaluate_lofo
from grokwatch.forecast.io import load
from grokwatch.forecast.transfer import THRESHOLD_RULES, threshold_from_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rule", choices=THRESHOLD_RULES, help="default: the thresholds as fitted")
    ap.add_argument("--from", dest="source", required=True, help="OUT of the committed run")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    source = Path(args.source)
    settings = json.loads((source / "lofo.json").read_text())["settings"]
    models = []
    for path in sorted((source / "lofo" / "models").glob("*.npz")):
        model = load(path)
        models.append(model)
        if args.rule is None:
            continue
        report = dict(model.fit_report_)
        model.alert_threshold_ = threshold_from_report(report, args.rule)
        model.fit_report_ = {
            **report,
            "threshold_rule": args.rule,
            "alert_threshold": model.alert_threshold_,
        }
        print(f"{path.stem}: alert threshold {report['alert_threshold']:.3f} -> "
              f"{model.alert_threshold_:.3f} ({args.rule})")  # fmt: skip
    evaluate_lofo(
        settings["corpora"],
        out=args.out,
        cadence=settings["cadence"],
        cadences=settings["fit_cadences"],
        folds=settings["folds"],
        fold_by=settings["fold_by"],
        calibrate=settings["calibrate"],
        far=settings["far"],
        C_grid=settings["C_grid"],
        params=settings["params"],
        measures=settings["measures"],
        transfer={**settings["transfer"], **({"threshold_rule": args.rule} if args.rule else {})},
        budget_samples=settings["budget_samples"],
        cap=settings["cap_per_family"],
        seed=settings["seed"],
        fold_models=models,
    )


if __name__ == "__main__":
    main()
