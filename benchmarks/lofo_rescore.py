"""A committed leave-one-family-out run scored again with the current code, without refitting.

The fold models of a committed run (``grokwatch evaluate --lofo`` writes them to
``OUT/lofo/models``) keep their own thresholds and are scored on the same runs with the same
settings (read from the run's ``lofo.json``): e.g. its *agent defaults* view after a change
to the agent's schedule or costs.

    nice -n 19 python -m benchmarks.lofo_rescore --from benchmarks/results/forecast \\
        --out benchmarks/results/forecast

Until 110b577 this script was ``benchmarks/lofo_threshold_rule.py``, whose ``--rule`` also
re-thresholded the fold models by a removed threshold rule (the ``median_threshold``
ablation); run that from a checkout of commit 110b577.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from grokwatch.forecast.commands import _json_safe, evaluate_lofo
from grokwatch.forecast.forecaster import GrokForecaster
from grokwatch.forecast.io import load


def rescore(
    source: str | Path,
    out: str | Path,
    adjust: Callable[[GrokForecaster], None] | None = None,
    variant: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The run in ``source`` scored again into ``out`` with its fold models, each first
    passed to ``adjust`` (e.g. an ablation that re-thresholds them, named by ``variant`` in
    the settings of ``out/lofo.json``: :func:`mark_variant`)."""
    source = Path(source)
    settings = json.loads((source / "lofo.json").read_text())["settings"]
    models = [load(path) for path in sorted((source / "lofo" / "models").glob("*.npz"))]
    for model in models if adjust is not None else ():
        adjust(model)
    result = evaluate_lofo(
        settings["corpora"],
        out=out,
        cadence=settings["cadence"],
        cadences=settings["fit_cadences"],
        folds=settings["folds"],
        fold_by=settings["fold_by"],
        calibrate=settings["calibrate"],
        far=settings["far"],
        C_grid=settings["C_grid"],
        params=settings["params"],
        measures=settings["measures"],
        budget_samples=settings["budget_samples"],
        cap=settings["cap_per_family"],
        seed=settings["seed"],
        fold_models=models,
    )
    if variant is not None:
        mark_variant(out, result, variant)
    return result


def mark_variant(out: str | Path, result: dict[str, Any], variant: Mapping[str, Any]) -> None:
    """Name the ablation that made ``result``: ``variant`` goes into its settings, and into
    those of the ``out/lofo.json`` that ``evaluate_lofo`` wrote."""
    result["settings"]["variant"] = dict(variant)
    path = Path(out) / "lofo.json"
    saved = json.loads(path.read_text())
    saved["settings"] = result["settings"]
    path.write_text(json.dumps(_json_safe(saved), indent=1) + "\n")


def main(
    adjust: Callable[[GrokForecaster], None] | None = None,
    variant: Mapping[str, Any] | None = None,
    doc: str = __doc__,
) -> None:
    """The command line (``--from``, ``--out``) of :func:`rescore`, also for an ablation's
    script (``doc``, its docstring, describes it)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--from", dest="source", required=True, help="OUT of the committed run")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rescore(args.source, args.out, adjust, variant)


if __name__ == "__main__":
    main()
