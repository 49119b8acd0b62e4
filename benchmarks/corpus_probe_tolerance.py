"""Committed corpus-v2 runs trained again with the stack's batched probes, column by column.

`trainer.stacked_probes` computes three of the agents' probes (Monte Carlo dropout, the dropout
robustness curve, circuit complexity) for a whole stack at once; everything else — training,
the loss and accuracies that label a run, every other probe — is what it was. This script
checks that on real runs: it takes the cheapest whole stacks of each family in the v2 plan
(`trainer.sweep.plan_stacks` over the v2 specs, the stacks the regenerate command trains; a
stack's runs round together, so only a stack of the same runs can reproduce a committed run),
trains them again with the current code, full budgets and early stop as in the sweep, and
compares every recorded column with the committed run file:

- **training columns** (every column the batched probes do not write, but the agent's own
  timing ``agent_overhead_ratio``): bitwise equal, or the run is reported;
- **batched-probe columns**: the largest relative difference, ``|new − committed| /
  max(|committed|, 1e-12)``;
- labels (outcome, t_mem, t_grok, gap, sharpness), steps run and every probe's status: equal.

    python -m benchmarks.corpus_probe_tolerance \\
        --json benchmarks/results/corpus/probe_tolerance.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

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
    t0 = time.perf_counter()
    results = run_stack(stack)  # one torch thread, as in the sweep's workers
    seconds = time.perf_counter() - t0
    row: dict[str, Any] = {
        "family": stack[0].family,
        "runs": len(stack),
        "seconds": seconds,
        "model_steps": 0,
        "training_columns_identical": True,
        "differing_training_columns": [],
        "labels_identical": True,
        "statuses_identical": True,
        "batched_relative": {c: 0.0 for c in sorted(BATCHED_COLUMNS)},
        "batched_values_differing": 0,
        "batched_values": 0,
    }
    for result in results:
        if result.status != "ok":
            raise RuntimeError(f"{result.task.run_id} failed: {result.error}")
        old = read_run(run_path(CORPUS, result.task.run_id))
        row["model_steps"] += result.steps_run
        same_shape = list(result.columns) == list(old.columns) and np.array_equal(
            result.steps, old.steps
        )
        if not same_shape:
            row["training_columns_identical"] = False
            row["differing_training_columns"].append(f"{result.task.run_id}: steps/columns")
            continue
        for j, column in enumerate(old.columns):
            old_v = np.asarray(old.values[:, j])
            new_v = np.asarray(result.values[:, j], dtype=old_v.dtype)  # as written
            if column in TIMING_COLUMNS:
                continue
            if column in BATCHED_COLUMNS:
                rel = relative(new_v, old_v)
                row["batched_relative"][column] = max(row["batched_relative"][column], rel)
                row["batched_values"] += int(np.sum(~np.isnan(old_v)))
                differ = ~((new_v == old_v) | (np.isnan(new_v) & np.isnan(old_v)))
                row["batched_values_differing"] += int(np.sum(differ))
            elif not np.array_equal(new_v, old_v, equal_nan=True):
                row["training_columns_identical"] = False
                row["differing_training_columns"].append(f"{result.task.run_id}: {column}")
        if result.labels != old.meta["labels"] or result.steps_run != old.meta["steps_run"]:
            row["labels_identical"] = False
        if result.agent.get("probe_status") != old.meta["agent"].get("probe_status"):
            row["statuses_identical"] = False
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
              f"{max(r['batched_relative'].values()):.2e}", flush=True)  # fmt: skip
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
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
