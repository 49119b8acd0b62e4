"""Which committed corpus-v2 runs does the regenerate command give again, bit for bit?

The command (`python -m trainer.sweep --spec trainer/specs/v2/*.json --out DIR --stack 16`,
docs/corpus.md) trains the stacks of its plan, each padded to the rows the plan gives it
(`trainer.execution.pending_stacks`), whatever is already on disk. This script trains every
stack of that plan from an empty directory the way the committed corpus was trained (every
agent measuring its own model, one torch thread), but only the first `--steps` steps of each
run, and compares each run with the same rows of its committed file, every column both record
(the agent's own timing `agent_overhead_ratio` aside: no rerun repeats a timing). Runs written
before the agent recorded its bookkeeping columns (`agent_probe_errors`,
`agent_overhead_ratio`; grokwatch f05764b) lack those two, and are counted apart.

A run that differs is not what the command gives. A run whose first steps are equal very likely
is, but a prefix proves nothing about the rest: a run padded to other rows than the committed
one first differs at step 1, 50 or 100 (the first three evaluations), so a few may differ
only later.

    python -m benchmarks.corpus_reproduce --steps 100 \\
        --json benchmarks/results/corpus/reproduce.json

A prefix cannot show a difference that starts later (a probe that first runs after step 100,
a schedule that changed), so `--stacks N` trains a seeded sample of N stacks per family and
`--steps` larger than every budget trains each run whole, as the sweep did:

    python -m benchmarks.corpus_reproduce --steps 100000 --stacks 1 \\
        --json benchmarks/results/corpus/reproduce_whole.json
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report_io import write_report
from trainer.corpus import read_run, run_path
from trainer.cpus import cpu_quota
from trainer.execution import pending_stacks
from trainer.executors import local_executor
from trainer.runner import RunResult
from trainer.spec import RunTask, load_spec
from trainer.stacked import run_stack_probes_per_run

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "trainer/data/corpus"
#: Measured, not computed: the agent's share of the loop's wall time.
TIMING_COLUMNS = frozenset({"agent_overhead_ratio"})


def first_difference(
    result: RunResult, corpus: Path, whole: bool = False
) -> tuple[int | None, list[str], list[str]]:
    """Compare `result` with its committed run over the columns both have: the first step at
    which one differs and the columns that differ there (None, []: bitwise equal), and the
    columns the committed file lacks (runs written before the agent recorded its own
    bookkeeping columns, `agent_probe_errors` and `agent_overhead_ratio`, lack those two)."""
    old = read_run(run_path(corpus, result.task.run_id))
    n = len(result.steps)
    lacks = sorted(set(result.columns) - set(old.columns))
    longer = whole and len(old.steps) != n  # a whole run must end where the committed one did
    if (
        longer
        or not np.array_equal(result.steps, old.steps[:n])
        or set(old.columns) - set(result.columns)
    ):
        return int(result.steps[0]), ["steps or columns"], lacks
    at: dict[str, int] = {}
    for column in old.columns:
        if column in TIMING_COLUMNS:
            continue
        new_v = result.values[:, result.columns.index(column)]
        old_v = old.values[:n, list(old.columns).index(column)]
        differ = ~((new_v == old_v) | (np.isnan(new_v) & np.isnan(old_v)))
        if differ.any():
            at[column] = int(result.steps[int(np.argmax(differ))])
    if not at:
        return None, [], lacks
    first = min(at.values())
    return first, sorted(c for c, step in at.items() if step == first), lacks


def check_stack(tasks: list[RunTask], rows: int, steps: int, corpus: str) -> list[dict[str, Any]]:
    """Train `tasks` (one stack of the plan, padded to `rows`) for `steps` steps; compare."""
    short = [dataclasses.replace(t, config={**t.config, "steps": min(steps, t.budget)})
             for t in tasks]  # fmt: skip
    budgets = {t.run_id: t.budget for t in tasks}  # the run's own, not the shortened task's
    rows_out = []
    for result in run_stack_probes_per_run(short, rows=rows):
        if result.status != "ok":
            raise RuntimeError(f"{result.task.run_id} failed: {result.error}")
        whole = steps >= budgets[result.task.run_id]
        step, columns, lacks = first_difference(result, Path(corpus), whole=whole)
        rows_out.append({
            "run_id": result.task.run_id,
            "family": result.task.family,
            "stack_runs": len(tasks),
            "first_difference": step,
            "columns": columns,
            "committed_lacks": lacks,
        })  # fmt: skip
    return rows_out


def sample_stacks(
    units: list[tuple[list[RunTask], int]], n: int, seed: int = 0
) -> list[tuple[list[RunTask], int]]:
    """`n` stacks of each family, drawn with a fixed seed, in plan order."""
    chosen: set[int] = set()
    for family in sorted({s[0].family for s, _ in units}):
        mine = [i for i, (s, _) in enumerate(units) if s[0].family == family]
        chosen.update(random.Random(f"{seed}-{family}").sample(mine, min(n, len(mine))))
    return [u for i, u in enumerate(units) if i in chosen]


def summarize(runs: list[dict[str, Any]], corpus: Path = CORPUS) -> dict[str, dict[str, Any]]:
    """Per family: runs, how many are equal and how many differ (by the step they first
    differ at), and the worker-hours the differing ones took in the committed sweep (their
    `wall_time`): what regenerating them would cost."""
    families: dict[str, dict[str, Any]] = {}
    for family in sorted({r["family"] for r in runs}):
        mine = [r for r in runs if r["family"] == family]
        differing = [r for r in mine if r["first_difference"] is not None]
        seconds = sum(float(read_run(run_path(corpus, r["run_id"])).meta["wall_time"])
                      for r in differing)  # fmt: skip
        families[family] = {
            "runs": len(mine),
            "identical": len(mine) - len(differing),
            "identical_but_older_columns": sum(
                1 for r in mine if r["first_difference"] is None and r["committed_lacks"]),
            "differing": len(differing),
            "first_difference_steps": dict(sorted(Counter(
                r["first_difference"] for r in differing).items())),
            "differing_worker_hours": seconds / 3600,
        }  # fmt: skip
        print(f"{family}: {families[family]}", flush=True)
    return families


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--family", action="append", default=[], help="only these (repeat)")
    parser.add_argument(
        "--stacks",
        type=int,
        default=None,
        help="a seeded sample of N stacks per family (default: every stack)",
    )
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.stacks is not None and args.stacks < 1:
        parser.error(f"--stacks must be >= 1, got {args.stacks}")
    specs = sorted((ROOT / "trainer/specs/v2").glob("*.json"))
    tasks = [t for path in specs for t in load_spec(path).tasks()]
    units = [(s, rows) for s, rows in pending_stacks(tasks, tasks, 16)
             if not args.family or s[0].family in args.family]  # fmt: skip
    if args.stacks is not None:
        units = sample_stacks(units, args.stacks)
    started = time.perf_counter()
    executor = local_executor(min(args.workers or cpu_quota(), len(units)))
    try:
        futures = [executor.submit(check_stack, s, rows, args.steps, str(CORPUS))
                   for s, rows in units]  # fmt: skip
        runs = [row for future in futures for row in future.result()]
    finally:
        executor.shutdown()
    report = {
        "steps": args.steps,
        "whole_runs": args.steps >= max(t.budget for s, _ in units for t in s),
        "stacks": len(units),
        "wall_s": time.perf_counter() - started,
        "families": summarize(runs),
        "runs": sorted(runs, key=lambda r: r["run_id"]),
    }
    write_report(args.json, report)
    return report


if __name__ == "__main__":
    main()
