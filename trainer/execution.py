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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trainer import corpus as corpus_io
from trainer.cpus import cpu_quota
from trainer.executors import local_executor
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
    version: int | None = None,
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
