"""Why a held-out family's negatives alarm: how close they came to the label's 90 %.

A run *groks* when its test accuracy reaches 0.90 within its budget (docs/corpus.md, *Labels*);
a negative that plateaus at 0.88 is labelled like one that never left chance. This script
takes the committed leave-one-family-out run (``grokwatch evaluate --lofo``: its settings from
``lofo.json`` and its fold models from ``lofo/models``), replays the same seeded sample of each
held-out family through the model fitted without it (reading only the run's ``--measures``,
as the evaluation does), and reports, for the family's negatives,
the largest test accuracy each reached in the window an alert could fire in (before the budget)
and whether its forecast crossed the calibrated threshold there, read as the evaluation reads
it (:func:`grokwatch.forecast.training.alert_scores`: only a forecast confident enough to act
on may alert; the evaluation's negatives: ``memorization`` and ``confusion``). Nothing is
fitted or tuned here.

    nice -n 19 python -m benchmarks.lofo_near_miss --from benchmarks/results/forecast \\
        --json benchmarks/results/forecast/lofo_near_miss.json
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report_io import write_report
from grokwatch.forecast.commands import _load_corpus, sample_families
from grokwatch.forecast.evaluate import run_max
from grokwatch.forecast.io import load
from grokwatch.forecast.lofo import minimal_run
from grokwatch.forecast.replay import (
    NEGATIVE,
    Replay,
    architecture_family,
    replay,
    with_family,
)
from grokwatch.forecast.training import alert_scores

NEAR_MISS = 0.8
"""A negative whose test accuracy reached this before its budget is a near miss of the label
(``t_grok``: 0.9)."""


def best_test_accuracy(r: Replay) -> float:
    """The largest test accuracy ``r`` measured within its budget (``-inf`` if none)."""
    acc = np.asarray(r.measures.get("test_accuracy", ()), float)
    keep = np.isfinite(acc)
    if r.budget is not None:
        keep &= r.steps <= r.budget
    return float(acc[keep].max()) if keep.any() else -math.inf


def quartiles(values: list[float]) -> list[float] | None:
    v = [x for x in values if np.isfinite(x)]
    return [round(float(q), 3) for q in np.percentile(v, [25, 50, 75])] if v else None


def family_report(runs: list[Replay], model: Any) -> dict[str, Any]:
    threshold = float(model.alert_threshold_)
    neg = [r for r in runs if r.outcome in NEGATIVE]
    pos = [r for r in runs if r.outcome == "grokking"]  # counted only
    alarm, quiet, near = [], [], 0
    for r in neg:
        best = best_test_accuracy(r)
        near += bool(best >= NEAR_MISS)
        (alarm if run_max(r, alert_scores(r.forecasts(model))) >= threshold else quiet).append(best)
    return {
        "threshold": threshold,
        "n_negative": len(neg),
        "false_alarms": len(alarm),
        "near_misses": near,
        "false_alarms_near": sum(bool(x >= NEAR_MISS) for x in alarm),
        "alarmed_best_test_accuracy": quartiles(alarm),
        "quiet_best_test_accuracy": quartiles(quiet),
        "n_grokking": len(pos),
    }


def sampled_runs(settings: dict[str, Any]) -> list[Any]:
    """The labelled runs of a committed LOFO run (its ``lofo.json`` ``settings``): its seeded
    sample of its corpora, not replayed."""
    runs = [r for c in settings["corpora"] for r in _load_corpus(c, ("train", "eval", "heldout"))]
    return sample_families([r for r in runs if r.labels.get("outcome")],
                           settings["cap_per_family"], seed=settings["seed"])  # fmt: skip


def held_out(source: Path) -> Iterator[tuple[str, Any, list[Replay]]]:
    """Each held-out family of the committed LOFO run in ``source``: its fold model and its runs
    of the run's seeded sample, replayed as the fold model read them (only the measures it was
    fitted on, at the run's cadence)."""
    settings = json.loads((source / "lofo.json").read_text())["settings"]
    runs = sampled_runs(settings)
    measures = settings.get("measures")
    for path in sorted((source / "lofo" / "models").glob("*.npz")):
        family = path.stem
        mine = [with_family(replay(minimal_run(r, measures) if measures else r,
                                   cadence=settings["cadence"]), r)
                for r in runs if architecture_family(r) == family]  # fmt: skip
        yield family, load(path), mine


def report_families(
    doc: str, family_report: Callable[[list[Replay], Any], dict[str, Any]], **head: Any
) -> dict[str, Any]:
    """The main of a script that reads a committed LOFO run: ``family_report(runs, model)``
    for every held-out family (:func:`held_out`) under ``"families"``, beside ``head``,
    printed and written to ``--json``; the command line: ``--from`` the run's OUT, ``--json``
    where the report goes (``doc``, the script's docstring, describes it)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--from", dest="source", type=Path, required=True,
                        help="the OUT of a committed `grokwatch evaluate --lofo`")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    report: dict[str, Any] = {**head, "families": {}}
    for family, model, mine in held_out(args.source):
        report["families"][family] = family_report(mine, model)
        print(family, report["families"][family], flush=True)
    write_report(args.json, report)
    return report


def main() -> dict[str, Any]:
    return report_families(__doc__, family_report, near=NEAR_MISS)


if __name__ == "__main__":
    main()
