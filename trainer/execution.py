"""Executing a sweep's runs: plan the units of work (single runs or stacks), hand them to an
executor, write every result into the corpus as it arrives (`trainer.corpus`, one atomic file
per run), report counts. `trainer.sweep` (specs, CLI) and `trainer.checks` (the slow-grokker
check) both drive it.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from trainer import corpus as corpus_io
from trainer.cpus import cpu_quota
from trainer.executors import local_executor
from trainer.families import FAMILIES, train_size
from trainer.runner import RunResult, run_one
from trainer.spec import RunTask
from trainer.stacked import run_stack, stack_key

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


def spec_version(stack: int) -> int:
    """The corpus format a sweep writes: v2 when it stacks runs (its own command), else v1."""
    return 2 if stack > 1 else 1


#: Milliseconds per model-step of a stacked run, by family (corpus v2's throughput benchmark,
#: benchmarks/results/corpus/throughput.json before batched probes): only to order stacks.
STEP_MS = {"mlp": 0.83, "onehot": 0.84, "perm": 0.78, "transformer": 3.32, "digits": 0.78,
           "parity": 0.71}  # fmt: skip
ORDERS = ("turns", "longest")


def stack_cost(stack: Sequence[RunTask]) -> float:
    """Estimated seconds of one worker for `stack`: its runs' budgets × its family's cost of a
    model-step (1 ms for a family not in :data:`STEP_MS`)."""
    return sum(t.budget for t in stack) * STEP_MS.get(stack[0].family, 1.0) / 1000


def plan_stacks(
    tasks: Sequence[RunTask], size: int, *, order: str = "turns"
) -> list[list[RunTask]]:
    """Group tasks into stacks of at most `size` runs with one `stack_key`, and order them.

    `order="turns"`: families take turns, so whenever a sweep stops every family is in what it
    wrote. `order="longest"`: the longest stacks first (:func:`stack_cost`), the classic rule
    for balancing a pool (the last stacks to start are the short ones, so the workers finish
    close together); a sweep stopped early then holds the longest stacks' families first.
    Which stacks there are does not depend on the order, only when each one runs: the runs
    are the same either way.

    Within a key, runs are sorted by training-set size and budget before they are cut into
    stacks, so a stack pads few rows and its runs end at similar times.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order=!r}")
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
    turns: list[list[RunTask]] = []
    while any(queues):
        for queue in queues:
            if queue:
                turns.append(queue.pop())
    if order == "longest":
        turns.sort(key=stack_cost, reverse=True)  # stable: ties keep their turn
    return turns


def _size(config: dict[str, Any]) -> float:
    return float(config.get("frac", config.get("n_train", 0)))


def stack_rows(stack: Sequence[RunTask]) -> int:
    """The rows `stack` pads its training sets to: its largest training set."""
    return max(train_size(FAMILIES[t.family].config_cls.from_dict(dict(t.config))) for t in stack)


def pending_stacks(
    tasks: Sequence[RunTask], pending: Sequence[RunTask], size: int, *, order: str = "turns"
) -> list[tuple[list[RunTask], int]]:
    """The units of a stacked sweep: the stacks :func:`plan_stacks` makes of *all* `tasks`, each
    cut down to its runs in `pending`, with the rows the whole stack pads to.

    A run's float rounding depends on the rows its stack pads to (`trainer.stacked`), so the
    stacks and their padding are fixed by the specs, never by what is left to do: a sweep
    resumed any number of times, or a pilot (`limit`), trains every run as one uninterrupted
    sweep from an empty directory does.
    """
    todo = {t.run_id for t in pending}
    units = []
    for stack in plan_stacks(tasks, size, order=order):
        left = [t for t in stack if t.run_id in todo]
        if left:
            units.append((left, stack_rows(stack)))
    return units


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
    version: int | None = None,
    order: str = "turns",
    stack_fn: Callable[..., list[RunResult]] = run_stack,
    rows: Mapping[str, int] | None = None,
) -> SweepReport:
    """The loop of `sweep` over tasks whose specs are already in `out`'s manifest. `order`:
    see :func:`plan_stacks`; `stack_fn(tasks, rows=)` trains one stack (a picklable top-level
    function, :func:`trainer.stacked.run_stack`); the stacks are :func:`pending_stacks`.
    `rows` (stacked only) gives the rows each run pads to, by run id, when they were set by
    another plan than `tasks`' own (the slow-grokker check continues corpus runs): each run
    then trains on its own, bit for bit as in the stack it was planned in."""
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

    units: list[tuple[list[RunTask], int]]
    if rows is not None:
        if stack <= 1:
            raise ValueError("rows= pads stacked runs; it needs stack > 1")
        missing = sorted(t.run_id for t in pending if t.run_id not in rows)
        if missing:
            raise ValueError(f"rows= lacks the runs {missing}")
        units = [([task], rows[task.run_id]) for task in pending]
    elif stack > 1:
        units = pending_stacks(tasks, pending, stack, order=order)
    else:
        units = [([task], 0) for task in pending]
    own = executor is None
    if own:
        executor = local_executor(min(workers or cpu_quota(), len(units)))
    bar = tqdm(total=len(pending), unit="run", disable=not progress, dynamic_ncols=True)
    try:
        if stack > 1:
            futures = {executor.submit(stack_fn, unit, rows=n): unit for unit, n in units}
        else:
            futures = {executor.submit(fn, unit[0]): unit for unit, _ in units}
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
                    version=version or spec_version(stack),
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
