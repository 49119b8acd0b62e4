"""Sweeps: train every run of a spec, watched by the real grokwatch agent, into a corpus.

    python -m trainer.sweep --spec trainer/specs/mlp-train.json --out trainer/data/corpus
    python -m trainer.sweep --spec SPEC --out DIR --backend ray [--ray-address ADDR]

The unit of work is `run_one(task) -> RunResult`: a top-level function of picklable data, so
any `concurrent.futures`-style executor can run it. Three come ready:

- a local process pool (the default): `spawn` start method (a forked CUDA context is unsafe),
  one torch thread per worker, as many workers as the CPU quota allows. Processes, not threads:
  one full-batch step of these small models is a handful of small matmuls that one thread
  runs at ~80 % of its matmul peak, and two processes give ~1.9× one (RESEARCH.md §4);
- `RayExecutor`, for a Ray cluster (`ray.init(address=...)`) or a local Ray;
- anything with `submit(fn, *args) -> Future` (pass it to `sweep(executor=...)`).

The main process alone writes the corpus (`trainer.corpus`), one atomic file per finished
run, so workers need no shared file system and a killed sweep resumes where it stopped: runs
already on disk are skipped, by id. A run that raises is recorded with its error (status
"failed") and the sweep goes on; `--retry-failed` runs those again.

Each run is trained with `grokwatch.Agent` (every built-in probe, `every` steps apart, no
store: `history` is read back at the end), so the corpus holds exactly the measures users'
agents compute. Once the run has generalized (t_grok) its label can no longer change within
the budget, so the run is stopped `max(tail · t_grok, tail_min)` steps later: enough of the
curve after the jump for a forecaster to see it, without paying for a flat line to the budget.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import json
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trainer import corpus as corpus_io
from trainer.checks import check_memorization
from trainer.cpus import cpu_quota
from trainer.executors import InlineExecutor, RayExecutor, local_executor
from trainer.heap import keep_heap
from trainer.runner import RunResult, StopAfterGeneralization, history_arrays, run_one
from trainer.spec import RunTask, SpecError, SweepSpec, load_spec
from trainer.stacked import run_stack, stack_key

# The sweep's parts live in their own modules; these names stay importable from here.
__all__ = [
    "InlineExecutor", "RayExecutor", "RunResult", "StopAfterGeneralization", "SweepReport",
    "check_memorization", "cpu_quota", "execute", "history_arrays", "keep_heap",
    "local_executor", "main", "plan_stacks", "run_one", "run_stack", "sweep",
]  # fmt: skip

SHORT = {"grokking": "grok", "comprehension": "comp", "memorization": "mem", "confusion": "conf"}


# -- the sweep -------------------------------------------------------------------------------


@dataclasses.dataclass
class SweepReport:
    total: int  # runs in the specs
    skipped: int  # already on disk
    done: int  # trained and written now
    failed: int
    outcomes: Counter[str]
    wall_time: float


def _postfix(outcomes: Counter[str]) -> str:
    return " ".join(f"{SHORT.get(k, k)} {outcomes[k]}" for k in (*SHORT, "failed"))


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
) -> SweepReport:
    """Run every task of `specs` not yet in `out`; write each result as it arrives.

    `executor` is anything with `submit(fn, *args) -> Future`; None builds the local process
    pool (and shuts it down at the end). `limit` trains at most that many pending runs (a
    pilot). `fn` is the unit of work (tests pass a failing one). `stack` > 1 trains up to that
    many runs of one shape at once (`trainer.stacked`; corpus v2), 1 one run at a time (v1).
    """
    out = Path(out)
    tasks: list[RunTask] = []
    for spec in specs:
        corpus_io.register_spec(out, spec.to_dict(), spec.role_, version=spec_version(stack))
        tasks += spec.tasks()
    return execute(
        tasks, out, executor=executor, workers=workers, retry_failed=retry_failed,
        limit=limit, progress=progress, fn=fn, stack=stack,
    )  # fmt: skip


def spec_version(stack: int) -> int:
    """The corpus format a sweep writes: v2 when it stacks runs (its own command), else v1."""
    return 2 if stack > 1 else 1


def plan_stacks(tasks: Sequence[RunTask], size: int) -> list[list[RunTask]]:
    """Group tasks into stacks of at most `size` runs with one `stack_key`, and order them so
    that families take turns: whenever a sweep stops, every family is in what it wrote.

    Within a key, runs are sorted by training-set size and budget before they are cut into
    stacks, so a stack pads few rows and its runs end at similar times.
    """
    groups: dict[tuple[Any, ...], list[RunTask]] = {}
    for task in tasks:
        groups.setdefault(stack_key(task), []).append(task)
    by_family: dict[str, list[list[RunTask]]] = {}
    for key, group in sorted(groups.items(), key=lambda kv: repr(kv[0])):
        group.sort(key=lambda t: (_size(t.config), t.budget, t.run_id))
        for i in range(0, len(group), size):
            by_family.setdefault(key[0], []).append(group[i : i + size])
    rng = random.Random(0)
    queues = []
    for family in sorted(by_family):
        stacks = by_family[family]
        rng.shuffle(stacks)
        queues.append(stacks)
    order: list[list[RunTask]] = []
    while any(queues):
        for queue in queues:
            if queue:
                order.append(queue.pop())
    return order


def _size(config: dict[str, Any]) -> float:
    return float(config.get("frac", config.get("n_train", 0)))


def execute(
    tasks: Sequence[RunTask],
    out: Path,
    *,
    executor: Any = None,
    workers: int | None = None,
    retry_failed: bool = False,
    limit: int | None = None,
    progress: bool = True,
    fn: Callable[[RunTask], RunResult] = run_one,
    stack: int = 1,
) -> SweepReport:
    """The loop of `sweep` over tasks whose specs are already in `out`'s manifest."""
    from tqdm import tqdm

    started = time.perf_counter()
    corpus_io.clean_temporaries(out)
    done = corpus_io.finished_ids(out, include_failed=not retry_failed)
    pending = [t for t in tasks if t.run_id not in done]
    # A fixed shuffle: whenever a sweep stops, what it wrote is a uniform sample of all its
    # specs (a usable pilot), and long and short runs mix so the ETA is honest early on.
    random.Random(0).shuffle(pending)
    if limit is not None:
        pending = pending[:limit]
    outcomes: Counter[str] = Counter()
    report = SweepReport(len(tasks), len(tasks) - len(pending), 0, 0, outcomes, 0.0)
    if not pending:
        report.wall_time = time.perf_counter() - started
        return report

    units: list[list[RunTask]] = (
        plan_stacks(pending, stack) if stack > 1 else [[task] for task in pending]
    )
    own = executor is None
    if own:
        executor = local_executor(min(workers or cpu_quota(), len(units)))
    bar = tqdm(total=len(pending), unit="run", disable=not progress, dynamic_ncols=True)
    try:
        if stack > 1:
            futures = {executor.submit(run_stack, unit): unit for unit in units}
        else:
            futures = {executor.submit(fn, unit[0]): unit for unit in units}
        for future in cf.as_completed(futures):
            unit = futures[future]
            try:
                got = future.result()
                results: list[RunResult] = got if isinstance(got, list) else [got]
            except Exception as exc:  # the worker died or the backend lost the task
                error = f"{type(exc).__name__}: {exc}"
                results = [RunResult(task=t, status="failed", error=error) for t in unit]
            for result in results:
                corpus_io.write_run(
                    out, result.meta(), result.steps, result.columns, result.values,
                    version=spec_version(stack),
                )  # fmt: skip
                key = result.labels.get("outcome", "failed") if result.status == "ok" else "failed"
                outcomes[key] += 1
                report.done += 1
                report.failed += result.status != "ok"
                bar.set_postfix_str(_postfix(outcomes), refresh=False)
                bar.update()
    except BaseException:
        if own:
            # a running worker would otherwise finish its run for nobody
            workers_ = list((getattr(executor, "_processes", None) or {}).values())
            executor.shutdown(wait=False, cancel_futures=True)
            for process in workers_:
                process.terminate()
            own = False
        raise
    finally:
        bar.close()
        if own:
            executor.shutdown()
    report.wall_time = time.perf_counter() - started
    return report


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
