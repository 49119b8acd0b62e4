"""Forecaster v1 (the model shipped before v2) on the families it never saw, on the runs of
the leave-one-family-out evaluation: the side-by-side that ``lofo.json`` cannot hold, because
this grokwatch no longer reads v1 model files (format 1: a time regression with a residual
interval, replaced by the hazard model).

Run it from a checkout of commit 50d02b2 (the last one with the v1 forecaster and its model),
with the same corpora and cap as the leave-one-family-out run, so that it samples the same
runs (``sample_families``: seeded, per family):

    git archive 50d02b2 grokwatch trainer | tar -x -C /tmp/v1
    cd /tmp/v1 && nice -n 10 python /path/to/benchmarks/forecast_shipped_v1.py \\
        --corpus /path/to/trainer/data/corpus_v1,/path/to/trainer/data/corpus --cap 100 \\
        --out /path/to/benchmarks/results/forecast/lofo_shipped_v1.json

It scores the v1 model (``grokwatch/forecast/model/grokforecaster.npz`` of that commit,
fitted on corpus v1's MLPs, one-hot ones included) on every other family at the corpus
cadence, with :func:`grokwatch.forecast.lofo.family_summary` (the numbers of ``lofo.json``),
and on the same runs reduced to loss and accuracy (minimal users).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))  # the v1 checkout's grokwatch, not this one's


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True, help="corpus directories, comma-separated")
    ap.add_argument("--cap", type=int, default=100, help="runs per family at most (as --lofo)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    from grokwatch.forecast.commands import _json_safe, _load_corpus, sample_families
    from grokwatch.forecast.evaluate import evaluate
    from grokwatch.forecast.io import FORMAT_VERSION, load_default
    from grokwatch.forecast.lofo import family_summary, forecasts_of, minimal_run, minimal_summary
    from grokwatch.forecast.replay import architecture_family, replay, with_family

    if FORMAT_VERSION != 1:
        raise SystemExit("run this from a checkout with the v1 forecaster (commit 50d02b2)")
    model = load_default()
    fitted_on = {"mlp", "onehot"}  # corpus v1's train split: MLPs with and without embedding
    corpora = [c for c in args.corpus.split(",") if c]
    runs = [r for c in corpora for r in _load_corpus(c, ("train", "eval", "heldout"))]
    runs = sample_families([r for r in runs if r.labels.get("outcome")], args.cap)
    out: dict[str, object] = {
        "model": "forecaster v1 (commit 50d02b2)",
        "fitted_on": sorted(fitted_on),
        "corpora": corpora,
        "cap_per_family": args.cap,
        "families": {},
    }
    families: dict[str, object] = {}
    for fam in sorted({architecture_family(r) for r in runs} - fitted_on):
        mine = [r for r in runs if architecture_family(r) == fam]
        test = [with_family(replay(r), r) for r in mine]
        result = evaluate(model, test, (), baselines=())
        summary = family_summary(test, forecasts_of(model, test), result)
        small = [with_family(replay(minimal_run(r)), r) for r in mine]
        summary["minimal"] = minimal_summary(model, small)
        families[fam] = summary
        print(fam, {k: summary[k] for k in ("recall", "far", "lead_gap", "coverage", "ece")})
    out["families"] = families
    Path(args.out).write_text(json.dumps(_json_safe(out), indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
