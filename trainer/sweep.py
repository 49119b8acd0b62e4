"""Sweeps: train every run of a spec, watched by the real grokwatch agent, into a corpus.

    python -m trainer.sweep --spec trainer/specs/mlp-train.json --out trainer/data/corpus_v1
    python -m trainer.sweep --spec SPEC ... --out DIR --stack 16     # corpus v2: stacks of runs
    python -m trainer.sweep --spec SPEC --out DIR --backend ray [--ray-address ADDR]

This module is the command line and `sweep(specs, out)`; the parts live in focused modules:

- `trainer.runner`: the unit of work, `run_one(task) -> RunResult` (one run, its agent, its
  labels) and the early stop once a run's label is settled;
- `trainer.stacked`: `run_stack(tasks)`, many runs of one shape trained at once (corpus v2);
- `trainer.execution`: planning the units of work and writing each result as it arrives;
- `trainer.executors`: the local spawn pool, Ray, inline; `trainer.cpus` (the CPU quota from
  the affinity mask and the cgroup) and `trainer.heap` (glibc `mallopt`: keep freed memory);
- `trainer.checks`: the research check, slow grokkers continued past their budget.

The main process alone writes the corpus, one atomic file per finished run, so workers need no
shared file system and a killed sweep resumes where it stopped: runs already on disk are
skipped, by id. A run that raises is recorded with its error (status "failed") and the sweep
goes on; `--retry-failed` runs those again.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trainer import corpus as corpus_io
from trainer.checks import check_memorization
from trainer.cpus import cpu_quota
from trainer.execution import ORDERS, SweepReport, _postfix, execute, plan_stacks, spec_version
from trainer.executors import InlineExecutor, RayExecutor, local_executor
from trainer.heap import keep_heap
from trainer.runner import RunResult, StopAfterGeneralization, history_arrays, run_one
from trainer.spec import RunTask, SpecError, SweepSpec, load_spec
from trainer.stacked import run_stack, run_stack_probes_per_run

#: How a stacked sweep's agents run their probes (`sweep(probes=)`, `--probes`).
PROBES = ("batched", "per-run")

# The sweep's parts live in their own modules; these names stay importable from here.
__all__ = [
    "InlineExecutor", "RayExecutor", "RunResult", "StopAfterGeneralization", "SweepReport",
    "check_memorization", "cpu_quota", "execute", "history_arrays", "keep_heap",
    "local_executor", "main", "plan_stacks", "run_one", "run_stack", "sweep",
]  # fmt: skip


def sweep(
    specs: Sequence[SweepSpec],
    out: str | Path,
    *,
    executor: Any = None,
    workers: int | None = None,
    retry_failed: bool = False,
    limit: int | None = None,
    progress: bool = True,
    fn: Callable[[RunTask], RunResult] = run_one,
    stack: int = 1,
    order: str = "turns",
    probes: str = "batched",
) -> SweepReport:
    """Run every task of `specs` not yet in `out`; write each result as it arrives.

    `executor` is anything with `submit(fn, *args) -> Future`; None builds the local process
    pool (and shuts it down at the end). `limit` trains at most that many pending runs (a
    pilot). `fn` is the unit of work (tests pass a failing one). `stack` > 1 trains up to that
    many runs of one shape at once (`trainer.stacked`; corpus v2), 1 one run at a time (v1).
    `order` is the order stacks start in (`trainer.execution.plan_stacks`). `probes`
    (stacks only): "batched" computes the agents' three costliest probes for the whole stack
    at once (`trainer.stacked_probes`: training bitwise the same, those probes' columns within
    rounding), "per-run" lets every agent measure its own model, as corpus v2 was trained (the
    command then gives its committed runs bit for bit as far as checked: docs/corpus.md).
    """
    if probes not in PROBES:
        raise ValueError(f"probes must be one of {PROBES}, got {probes!r}")
    out = Path(out)
    tasks: list[RunTask] = []
    for spec in specs:
        corpus_io.register_spec(out, spec.to_dict(), spec.role_, version=spec_version(stack))
        tasks += spec.tasks()
    return execute(
        tasks, out, executor=executor, workers=workers, retry_failed=retry_failed,
        limit=limit, progress=progress, fn=fn, stack=stack, order=order,
        stack_fn=run_stack if probes == "batched" else run_stack_probes_per_run,
    )  # fmt: skip


# -- command line ----------------------------------------------------------------------------


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.sweep", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--spec", type=Path, action="append", default=[],
                        help="sweep spec JSON (repeat for several)")  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="corpus directory")
    parser.add_argument("--workers", type=int, default=None,
                        help="local worker processes (default: the CPU quota)")  # fmt: skip
    parser.add_argument("--backend", choices=("local", "ray"), default="local")
    parser.add_argument("--ray-address", default=None,
                        help="Ray cluster address (default: start a local Ray)")  # fmt: skip
    parser.add_argument("--retry-failed", action="store_true", help="train failed runs again")
    parser.add_argument("--limit", type=int, default=None, help="train at most N pending runs")
    parser.add_argument("--dry-run", action="store_true", help="check the specs, count runs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--stack", type=int, default=1,
                        help="train up to N runs of one shape at once (corpus v2: 32)")  # fmt: skip
    parser.add_argument("--order", choices=ORDERS, default="turns",
                        help="stacks start with families taking turns, or longest first "
                             "(balances the workers; the runs are the same)")  # fmt: skip
    parser.add_argument("--probes", choices=PROBES, default="batched",
                        help="with --stack N > 1: the costliest probes for the whole stack "
                             "at once, or each run's agent alone (how corpus v2 was trained); "
                             "one run at a time, every agent measures alone anyway")  # fmt: skip
    parser.add_argument(
        "--check-memorization",
        type=int,
        default=None,
        metavar="N",
        help="continue N memorization runs of --out to --factor × budget",
    )
    parser.add_argument("--factor", type=int, default=3, help="(with --check-memorization)")
    return parser


def main(argv: Sequence[str] | None = None) -> SweepReport | None:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    if args.stack < 1:
        parser.error(f"--stack must be >= 1, got {args.stack}")
    if args.check_memorization is not None:
        if args.check_memorization < 1 or args.factor < 2:
            parser.error("--check-memorization needs N >= 1 and --factor >= 2")
        check = check_memorization(
            args.out, args.check_memorization, factor=args.factor, workers=args.workers,
            progress=not args.quiet,
        )  # fmt: skip
        print(json.dumps({k: v for k, v in check.items() if k != "runs"}))
        return None
    if not args.spec:
        parser.error("--spec is required (or --check-memorization N)")
    try:
        specs = [load_spec(path) for path in args.spec]
    except (OSError, SpecError) as exc:
        parser.error(str(exc))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        parser.error(f"spec names must differ, got {names}")
    if args.dry_run:
        for spec in specs:
            tasks = spec.tasks()
            budgets = [t.budget for t in tasks]
            print(
                f"{spec.name}: {len(tasks)} runs of {spec.family}, budgets "
                f"{min(budgets)}–{max(budgets)} (sum {sum(budgets):,} steps)"
            )
        return None
    # SIGTERM (a scheduler stopping the job) ends the sweep like Ctrl-C: workers are stopped,
    # every run already written stays, and the next start resumes from there.
    signal.signal(signal.SIGTERM, _interrupt)
    executor = None
    if args.backend == "ray":
        executor = RayExecutor(args.ray_address, num_cpus=args.workers)
    try:
        report = sweep(
            specs,
            args.out,
            executor=executor,
            workers=args.workers,
            retry_failed=args.retry_failed,
            limit=args.limit,
            progress=not args.quiet,
            stack=args.stack,
            order=args.order,
            probes=args.probes,
        )
    except KeyboardInterrupt:
        done = len(corpus_io.finished_ids(args.out))
        print(f"interrupted: {done} runs are in {args.out}; the same command resumes", flush=True)
        raise SystemExit(130) from None
    finally:
        if executor is not None:
            executor.shutdown()
    print(
        f"{report.done} runs trained ({report.failed} failed), {report.skipped} already done, "
        f"of {report.total}, in {report.wall_time:.0f} s | {_postfix(report.outcomes)} "
        f"| corpus in {args.out}"
    )
    return report


if __name__ == "__main__":
    # Import by module name, so run_one pickles as trainer.sweep.run_one for spawned workers.
    from trainer.sweep import main as _main

    _main(sys.argv[1:])
