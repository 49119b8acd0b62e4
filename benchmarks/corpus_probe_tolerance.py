"""Committed corpus-v2 stacks trained again with the stack's batched probes, column by column.

`trainer.stacked_probes` computes three of the agents' probes (Monte Carlo dropout, the dropout
robustness curve, circuit complexity) for a whole stack at once; everything else — training,
the loss and accuracies that label a run, every other probe — is what it was. This script
checks that on real runs: it takes the cheapest whole stacks of each family in the v2 plan
(`trainer.sweep.plan_stacks` over the v2 specs: the stacks the regenerate command trains),
trains each twice as the sweep does (one torch thread, full budgets, early stop) — with the
batched probes, and with every agent measuring its own model (corpus v2 as committed) — and
compares every recorded column of the two:

- **training columns** (every column the batched probes do not write, but the agent's own
  timing ``agent_overhead_ratio``): bitwise equal, or the run is reported;
- **batched-probe columns**: how many values differ, and the largest relative difference
  ``|batched − alone| / max(|alone|, 1e-12)``;
- labels (outcome, t_mem, t_grok, gap, sharpness), steps run and every probe's status: equal.

It also compares the second training with the committed run files
(``reproduces_committed``): a full-batch run rounds with the rows its stack pads to, and the
committed corpus was written by a sweep resumed several times, each time planning stacks of
the runs still pending, so a stack of the full plan reproduces a committed run only where the
two paddings round alike (``benchmarks/corpus_reproduce.py`` checks every run).

    python -m benchmarks.corpus_probe_tolerance \\
        --json benchmarks/results/corpus/probe_tolerance.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report_io import write_report
from trainer.corpus import read_run, run_path
from trainer.spec import RunTask, load_spec
from trainer.stacked import run_stack
from trainer.sweep import plan_stacks

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "trainer/data/corpus"
#: The columns the batched probes write.
BATCHED_COLUMNS = frozenset({
    "mc_dropout_accuracy_mean", "mc_dropout_accuracy_var", "dropout_robustness_auc",
    "circuit_complexity", "circuit_complexity_mean",
})  # fmt: skip
#: Measured, not computed: the agent's share of the loop's wall time.
TIMING_COLUMNS = frozenset({"agent_overhead_ratio"})


def chosen_stacks(per_family: int, min_runs: int) -> list[list[RunTask]]:
    """The `per_family` stacks of at least `min_runs` runs with the fewest committed
    model-steps, of each family."""
    specs = sorted((ROOT / "trainer/specs/v2").glob("*.json"))
    plan = plan_stacks([t for path in specs for t in load_spec(path).tasks()], 16)
    by_family: dict[str, list[tuple[int, list[RunTask]]]] = {}
    for stack in plan:
        if len(stack) < min_runs:
            continue
        steps = sum(int(read_run(run_path(CORPUS, t.run_id)).meta["steps_run"]) for t in stack)
        by_family.setdefault(stack[0].family, []).append((steps, stack))
    chosen = []
    for family in sorted(by_family):
        chosen += [s for _, s in sorted(by_family[family], key=lambda x: x[0])[:per_family]]
    return chosen


def relative(new: np.ndarray, old: np.ndarray) -> float:
    if np.array_equal(new, old, equal_nan=True):
        return 0.0
    both = ~(np.isnan(new) & np.isnan(old))
    return float(np.max(np.abs(new[both] - old[both]) / np.maximum(np.abs(old[both]), 1e-12)))


def compare(stack: list[RunTask]) -> dict[str, Any]:
    """Train `stack` with batched probes and with every agent measuring alone (corpus v2 as
    committed); compare the two, and the second with the committed run files."""
    t0 = time.perf_counter()
    batched = run_stack(stack)  # one torch thread, as in the sweep's workers
    seconds = time.perf_counter() - t0
    alone = run_stack(stack, batched_probes=False)
    alone_by_id = {r.task.run_id: r for r in alone}
    row: dict[str, Any] = {
        "family": stack[0].family,
        "runs": len(stack),
        "seconds": seconds,
        "model_steps": sum(r.steps_run for r in batched),
        **_diff(batched, lambda rid: alone_by_id[rid]),
    }
    # does the stack reproduce the committed runs (the same runs stacked together)?
    committed = _diff(alone, lambda rid: _as_result(read_run(run_path(CORPUS, rid))))
    row["reproduces_committed"] = {
        k: committed[k]
        for k in ("training_columns_identical", "labels_identical", "batched_values_differing")
    }
    return row


def _as_result(run: Any) -> Any:
    """A committed run file with the fields of a `RunResult` that :func:`_diff` reads."""

    class Stored:
        columns, steps, values = tuple(run.columns), run.steps, run.values
        labels, steps_run, agent = run.meta["labels"], run.meta["steps_run"], run.meta["agent"]

    return Stored()


def _diff(results: list[Any], reference: Any) -> dict[str, Any]:
    """Column-by-column comparison of `results` with `reference(run_id)`, as written (float32)."""
    row: dict[str, Any] = {
        "training_columns_identical": True,
        "differing_training_columns": [],
        "labels_identical": True,
        "statuses_identical": True,
        "batched_relative": {c: 0.0 for c in sorted(BATCHED_COLUMNS)},
        "batched_absolute": {c: 0.0 for c in sorted(BATCHED_COLUMNS)},
        "batched_values_differing": 0,
        "batched_values": 0,
    }
    for result in results:
        if result.status != "ok":
            raise RuntimeError(f"{result.task.run_id} failed: {result.error}")
        old = reference(result.task.run_id)
        if result.labels != old.labels or result.steps_run != old.steps_run:
            row["labels_identical"] = False
        if result.agent.get("probe_status") != old.agent.get("probe_status"):
            row["statuses_identical"] = False
        if list(result.columns) != list(old.columns) or not np.array_equal(result.steps, old.steps):
            row["training_columns_identical"] = False
            row["differing_training_columns"].append(f"{result.task.run_id}: steps/columns")
            continue
        for j, column in enumerate(old.columns):
            old_v = np.asarray(old.values[:, j], dtype=np.float32)
            new_v = np.asarray(result.values[:, j], dtype=np.float32)  # as written
            if column in TIMING_COLUMNS:
                continue
            if column in BATCHED_COLUMNS:
                rel = relative(new_v, old_v)
                row["batched_relative"][column] = max(row["batched_relative"][column], rel)
                both = ~(np.isnan(new_v) | np.isnan(old_v))
                gap = float(np.max(np.abs(new_v[both] - old_v[both]), initial=0.0))
                row["batched_absolute"][column] = max(row["batched_absolute"][column], gap)
                row["batched_values"] += int(np.sum(~np.isnan(old_v)))
                differ = ~((new_v == old_v) | (np.isnan(new_v) & np.isnan(old_v)))
                row["batched_values_differing"] += int(np.sum(differ))
            elif not np.array_equal(new_v, old_v, equal_nan=True):
                row["training_columns_identical"] = False
                row["differing_training_columns"].append(f"{result.task.run_id}: {column}")
    return row


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-family", type=int, default=1)
    parser.add_argument("--min-runs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    for stack in chosen_stacks(args.per_family, args.min_runs):
        rows.append(compare(stack))
        r = rows[-1]
        print(f"{r['family']}: {r['runs']} runs, {r['model_steps']} model-steps, "
              f"{r['seconds']:.0f} s | training identical {r['training_columns_identical']} | "
              f"labels {r['labels_identical']} | batched values differing "
              f"{r['batched_values_differing']}/{r['batched_values']}, max relative "
              f"{max(r['batched_relative'].values()):.2e} | committed reproduced "
              f"{r['reproduces_committed']}", flush=True)  # fmt: skip
    report = {
        "stacks": rows,
        "runs": sum(r["runs"] for r in rows),
        "training_columns_identical": all(r["training_columns_identical"] for r in rows),
        "labels_identical": all(r["labels_identical"] for r in rows),
        "statuses_identical": all(r["statuses_identical"] for r in rows),
        "batched_values": sum(r["batched_values"] for r in rows),
        "batched_values_differing": sum(r["batched_values_differing"] for r in rows),
        "batched_max_relative": {
            c: max(r["batched_relative"][c] for r in rows) for c in sorted(BATCHED_COLUMNS)
        },
        "batched_max_absolute": {
            c: max(r["batched_absolute"][c] for r in rows) for c in sorted(BATCHED_COLUMNS)
        },
    }
    write_report(args.json, report)
    return report


if __name__ == "__main__":
    main()
