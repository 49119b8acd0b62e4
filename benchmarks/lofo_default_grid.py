"""Ablation (session 11): fit also on the evaluations the agent makes at its default settings.

The shipped recipe replays every fitting run at its own cadence and thinned to every 500 steps;
a user who keeps the agent's defaults gets neither: the default grid (dense early, log-spaced
later) thinned by the 1 % overhead cap, about 7 evaluations on a corpus MLP
(:func:`grokwatch.forecast.replay.thin` with ``"default"``). This variant adds that schedule
to the fit's cadences, so the trees also learn from forecasts made on so few evaluations. The
thresholds, the isotonic map and the hopeless threshold still come from the out-of-fold
forecasts at each run's own cadence, as in the recipe. Everything else is the headline's
settings (100 runs per family, loss and accuracy only, 100 trees at 0.1, one budget sample),
and every held-out family is judged as ``grokwatch evaluate --lofo`` judges it (it is that
command's code, :func:`~grokwatch.forecast.commands.evaluate_lofo`, with the cadences
``500,default``).

    GW_PAUSABLE=1 nice -n 19 python -m benchmarks.lofo_default_grid --out /tmp/default-grid
    # lofo.json, lofo.md to lofo_ablations/default_grid
"""

from __future__ import annotations

import time

from benchmarks.lofo_rescore import mark_variant
from benchmarks.lofo_variant import parser
from grokwatch.forecast.commands import evaluate_lofo
from grokwatch.forecast.replay import DEFAULT_GRID

VARIANT = {"name": "default_grid", "script": "benchmarks/lofo_default_grid.py"}


def main() -> None:
    ap = parser(__doc__)
    ap.set_defaults(cadences=f"500,{DEFAULT_GRID}")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cadences = [c if c == DEFAULT_GRID else int(c) for c in args.cadences.split(",") if c]
    result = evaluate_lofo(
        [c for c in args.corpus.split(",") if c],
        out=args.out,
        cadences=cadences,
        params={"n_trees": args.trees, "learning_rate": args.learning_rate},
        measures=[m for m in args.measures.split(",") if m] or None,
        budget_samples=args.budget_samples,
        cap=args.cap or None,
        plots=False,
    )
    result["settings"]["seconds"] = round(time.perf_counter() - t0, 1)
    mark_variant(args.out, result, VARIANT)


if __name__ == "__main__":
    main()
