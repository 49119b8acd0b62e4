"""The leave-one-family-out evaluation of ``grokwatch evaluate --lofo`` with a variant of the fit.

An ablation whose variant is not an option of the library (the project keeps no option that
lost its own ablation) is a script that gives :func:`run` its fit: ``fit(train, extra, options,
say)`` returns the fold's model, its :class:`~grokwatch.forecast.training.FitReport` and what
the variant adds to the report. :func:`run` replays the runs as ``evaluate_lofo`` does
(:func:`benchmarks.lofo_persistence.replays`), fits every held-out family's model with the
variant, then scores them with :func:`~grokwatch.forecast.commands.evaluate_lofo` itself
(``fold_models``: the same runs, views and tables as ``grokwatch evaluate --lofo --out OUT``),
and adds the variant to ``OUT/lofo.json``'s settings. Its flags are the command's, except that
``--measures ''`` means every measure (the command's ``all``); the defaults (``--cap 100``,
not the recipe's 300) are the settings of the session-9 ablation records
(``lofo_ablations/group_robust`` and ``conformal_interval*``: ``--cap 100 --trees 100
--learning-rate 0.1 --cadences 500 --budget-samples 1 --model none``, loss and accuracy only,
folds by family, isotonic map).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.lofo_persistence import replays
from benchmarks.lofo_rescore import mark_variant
from grokwatch.forecast.commands import evaluate_lofo, fit_report
from grokwatch.forecast.forecaster import GrokForecaster
from grokwatch.forecast.lofo import MINIMAL_MEASURES, lofo_folds
from grokwatch.forecast.replay import Replay
from grokwatch.forecast.training import FitReport

Say = Callable[[str], None]
Fit = Callable[
    [Sequence[Replay], Sequence[Replay], Mapping[str, Any], Say],
    tuple[GrokForecaster, FitReport, Mapping[str, Any]],
]
"""``fit(train, extra, options, say)``: ``options`` are :func:`~.training.fit_replays`'s."""


def parser(doc: str) -> argparse.ArgumentParser:
    """The command's flags (see the module docstring for their defaults)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--corpus", default="trainer/data/corpus_v1,trainer/data/corpus")
    ap.add_argument("--measures", default=",".join(MINIMAL_MEASURES))
    ap.add_argument("--cap", type=int, default=100, help="runs per family at most (0: all)")
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--learning-rate", type=float, default=0.1)
    ap.add_argument("--cadences", default="500", help="extra cadences to fit on")
    ap.add_argument("--budget-samples", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    return ap


def run(args: argparse.Namespace, fit: Fit, variant: Mapping[str, Any], say: Say = print) -> Any:
    """Leave one family out with ``fit`` (see the module docstring); ``variant`` goes into
    ``settings["variant"]`` of ``OUT/lofo.json``. Returns ``evaluate_lofo``'s result."""
    t0 = time.perf_counter()
    corpora = [c for c in args.corpus.split(",") if c]
    measures = [m for m in args.measures.split(",") if m] or None
    cadences = [int(c) for c in args.cadences.split(",") if c]
    params = {"n_trees": args.trees, "learning_rate": args.learning_rate}
    options = {"folds": 5, "fold_by": "family", "calibrate": "isotonic", "far": 0.05,
               "C_grid": (1.0,), "params": params, "budget_samples": args.budget_samples,
               "seed": 0}  # fmt: skip
    settings = {"corpora": corpora, "cap_per_family": args.cap or None, "measures": measures,
                "fit_cadences": cadences, "seed": options["seed"]}  # fmt: skip
    base, extra = replays(settings)
    say(f"replayed {len(base)} runs in {time.perf_counter() - t0:.0f} s")
    models = []
    for fold in lofo_folds(base, extra):
        say(f"-- fitting without {fold.family} ({len(fold.train)} runs)")
        t1 = time.perf_counter()
        model, report, added = fit(fold.train, fold.extra, options, say)
        model.fit_report_ = fit_report(report, fold.train, time.perf_counter() - t1, **added)
        models.append(model)
    result = evaluate_lofo(
        corpora, out=args.out, cadences=cadences,
        **{k: v for k, v in options.items() if k != "params"}, params=params,
        measures=measures, cap=settings["cap_per_family"], plots=False, fold_models=models,
        say=say,
    )  # fmt: skip
    result["settings"]["seconds"] = round(time.perf_counter() - t0, 1)
    mark_variant(args.out, result, variant)
    return result
