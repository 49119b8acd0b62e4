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
import math
import multiprocessing
import os
import platform
import random
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer import corpus as corpus_io
from trainer.families import FAMILIES
from trainer.spec import RunTask, SpecError, SweepSpec, load_spec

SHORT = {"grokking": "grok", "comprehension": "comp", "memorization": "mem", "confusion": "conf"}


# -- the unit of work ------------------------------------------------------------------------


@dataclasses.dataclass
class RunResult:
    """What `run_one` sends back to the process that writes the corpus."""

    task: RunTask
    status: str  # "ok" or "failed"
    error: str = ""
    steps: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    columns: tuple[str, ...] = ()
    values: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0), np.float32))
    labels: dict[str, Any] = dataclasses.field(default_factory=dict)
    steps_run: int = 0
    wall_time: float = 0.0
    agent: dict[str, Any] = dataclasses.field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        t = self.task
        return {
            "run_id": t.run_id,
            "spec": t.spec,
            "family": t.family,
            "split": t.split,
            "status": self.status,
            "error": self.error,
            "config": t.config,
            "every": t.every,
            "max_samples": t.max_samples,
            "tail": t.tail,
            "tail_min": t.tail_min,
            "labels": self.labels,
            "steps_run": self.steps_run,
            "wall_time": self.wall_time,
            "agent": self.agent,
            "versions": {"torch": torch.__version__, "python": platform.python_version()},
        }


class _Stop:
    should_stop = True


class StopAfterGeneralization:
    """Wraps a `grokwatch.Agent` for the trainer's loop: the agent observes and decides as
    usual; this wrapper only adds "stop, the label is settled" once the run generalized."""

    def __init__(self, agent: Any, *, tail: float, tail_min: int) -> None:
        self.agent, self.tail, self.tail_min = agent, tail, tail_min

    def step(self, step: int, *, loss: torch.Tensor) -> Any:
        decision = self.agent.step(step, loss=loss)
        t_grok = self.agent.events.t_grok
        settled = t_grok is not None and step >= t_grok + max(self.tail * t_grok, self.tail_min)
        if settled and step % self.agent.every == 0:  # stop on an evaluation: it is recorded
            return _Stop()
        return decision

    def close(self) -> None:
        self.agent.close()


def run_one(task: RunTask) -> RunResult:
    """Train one run with the grokwatch agent attached; never raises (errors are recorded)."""
    from grokwatch import Agent, Limits, ModelIO

    started = time.perf_counter()
    threads = torch.get_num_threads()
    if task.threads is not None:
        torch.set_num_threads(task.threads)  # one per worker: parallelism comes from processes
    holder: dict[str, Any] = {}
    try:
        family = FAMILIES[task.family]
        config = family.config_cls.from_dict(dict(task.config))

        def factory(model: torch.nn.Module, data: Any, cfg: Any) -> StopAfterGeneralization:
            agent = Agent(
                model,
                train=(data.train_x, data.train_y),
                test=(data.test_x, data.test_y),
                every=task.every,
                run_id=task.run_id,
                config=task.config,
                budget=task.budget,
                transport=None,  # nothing on disk: the history is read back below
                modulus=family.modulus(cfg),
                io=ModelIO(loss_fn=family.loss_fn),
                limits=Limits(max_samples=task.max_samples),
            )
            holder["agent"] = agent
            return StopAfterGeneralization(agent, tail=task.tail, tail_min=task.tail_min)

        result = family.train(config, agent_factory=factory)
        agent = holder["agent"]
        steps, columns, values = history_arrays(agent.history)
        summary = agent.summary()
        labels = {k: summary[k] for k in ("outcome", "t_mem", "t_grok", "gap", "sharpness")}
        labels["budget"] = task.budget
        return RunResult(
            task=task,
            status="ok",
            steps=steps,
            columns=columns,
            values=values,
            labels=labels,
            steps_run=int(result.steps),
            wall_time=time.perf_counter() - started,
            agent={
                "errors": summary["agent_errors"],
                "last_error": summary["agent_last_error"],
                "measure_seconds": summary["measure_seconds"],
                "probe_status": summary["probe_status"],
            },
        )
    except Exception as exc:
        return RunResult(
            task=task,
            status="failed",
            error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}",
            wall_time=time.perf_counter() - started,
        )
    finally:
        torch.set_num_threads(threads)


def history_arrays(
    history: Iterable[tuple[int, dict[str, float]]],
) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    """Agent history → steps `(T,)`, sorted column names `(M,)`, values `(T, M)` float32 with
    NaN where a measure is missing or not finite (the corpus's NaN policy)."""
    points = list(history)
    columns = tuple(sorted({k for _, v in points for k in v}))
    index = {c: j for j, c in enumerate(columns)}
    values = np.full((len(points), len(columns)), np.nan, dtype=np.float32)
    for i, (_, v) in enumerate(points):
        for key, x in v.items():
            values[i, index[key]] = x if math.isfinite(x) else np.nan
    steps = np.array([s for s, _ in points], dtype=np.int64)
    return steps, columns, values


# -- executors -------------------------------------------------------------------------------


def cpu_quota() -> int:
    """CPUs this process may really use: the affinity mask, capped by a cgroup CPU quota
    (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us`) — in a container `nproc` can overstate it."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    quota = None
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            quota = int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        try:
            q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
            period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
            if q > 0:
                quota = q / period
        except (OSError, ValueError):
            pass
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit


def keep_heap() -> bool:
    """Keep freed tensor memory in the process heap instead of returning it to the kernel.

    A full-batch step allocates the same few MB-sized activations and gradients every time;
    glibc serves blocks that large with ``mmap`` and unmaps them on free, so every step pays
    hundreds of page faults to get zeroed pages back (200-350 per step for p = 97). Raising
    the mmap and trim thresholds keeps those blocks in the heap for reuse: the same arithmetic,
    identical weights, ~10 % faster steps (``benchmarks/keep_heap.py`` measures both sides).
    A no-op off glibc; returns whether it took effect.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) == 1
    return mallopt(_M_TRIM_THRESHOLD, 2**30) == 1 and ok


def _init_worker() -> None:
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    keep_heap()


def local_executor(workers: int | None = None) -> cf.ProcessPoolExecutor:
    """Process pool with the spawn start method, one torch thread per worker and the heap
    kept (:func:`keep_heap`)."""
    return cf.ProcessPoolExecutor(
        max_workers=workers or cpu_quota(),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
    )


class RayExecutor:
    """A `concurrent.futures`-style executor over Ray tasks (one CPU each).

    Connects to `address` (a cluster, "auto") or starts a local Ray with `num_cpus`; if Ray
    is already initialized it is used as is and left running at shutdown.
    """

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError("the ray backend needs `pip install grokwatch[ray]`") from exc
        self._ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is not None:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = num_cpus or cpu_quota()
            ray.init(**kwargs)
        self._remotes: dict[Callable[..., Any], Any] = {}

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        if fn not in self._remotes:
            self._remotes[fn] = self._ray.remote(num_cpus=1, max_retries=0)(fn)
        future: cf.Future[Any] = self._remotes[fn].remote(*args, **kwargs).future()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class InlineExecutor:
    """Runs each task in the calling process at submit time (debugging, tiny tests)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        future: cf.Future[Any] = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass


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
) -> SweepReport:
    """Run every task of `specs` not yet in `out`; write each result as it arrives.

    `executor` is anything with `submit(fn, *args) -> Future`; None builds the local process
    pool (and shuts it down at the end). `limit` trains at most that many pending runs (a
    pilot). `fn` is the unit of work (tests pass a failing one).
    """
    out = Path(out)
    tasks: list[RunTask] = []
    for spec in specs:
        corpus_io.register_spec(out, spec.to_dict(), spec.family_.role)
        tasks += spec.tasks()
    return execute(
        tasks, out, executor=executor, workers=workers, retry_failed=retry_failed,
        limit=limit, progress=progress, fn=fn,
    )  # fmt: skip


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

    own = executor is None
    if own:
        executor = local_executor(min(workers or cpu_quota(), len(pending)))
    bar = tqdm(total=len(pending), unit="run", disable=not progress, dynamic_ncols=True)
    try:
        futures = {executor.submit(fn, task): task for task in pending}
        for future in cf.as_completed(futures):
            task = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # the worker died or the backend lost the task
                result = RunResult(task=task, status="failed", error=f"{type(exc).__name__}: {exc}")
            corpus_io.write_run(out, result.meta(), result.steps, result.columns, result.values)
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


def check_memorization(
    directory: str | Path,
    n: int,
    *,
    factor: int = 3,
    seed: int = 0,
    executor: Any = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Are slow grokkers mislabelled? Continue `n` runs labelled memorization to `factor`×
    their budget and count those that generalize after all.

    The runs are trained again from scratch with the larger budget: training is deterministic
    on a CPU, so the first B steps repeat exactly (checked: the same t_mem), and the runs land
    in `DIR/checks/memorization/` (a corpus of its own) with `report.json` beside them.
    """
    from trainer.summary import CHECK_DIR

    directory = Path(directory)
    source = corpus_io.load(directory)
    memorized = sorted((r for r in source if r.outcome == "memorization"), key=lambda r: r.run_id)
    sample = random.Random(seed).sample(memorized, min(n, len(memorized)))
    out = directory / CHECK_DIR
    name = f"check-x{factor}"
    corpus_io.register_spec(out, {"name": name, "factor": factor, "n": n, "seed": seed}, "check")
    tasks = [
        RunTask(
            run_id=f"{r.run_id}-x{factor}",
            spec=name,
            family=r.family,
            split=r.split,
            config={**r.config, "steps": factor * int(r.labels["budget"])},
            every=int(r.meta["every"]),
            tail=float(r.meta["tail"]),
            tail_min=int(r.meta["tail_min"]),
            max_samples=int(r.meta["max_samples"]),
        )
        for r in sample
    ]
    execute(tasks, out, executor=executor, workers=workers, progress=progress)
    by_id = {r.run_id: r for r in sample}
    later, ratios, same, rows = 0, [], 0, []
    for run in corpus_io.load(out):
        original = by_id.get(run.run_id.rsplit("-x", 1)[0])
        if original is None:
            continue
        budget = int(original.labels["budget"])
        t_grok = run.labels.get("t_grok")
        same += run.labels.get("t_mem") == original.labels.get("t_mem")
        if t_grok is not None:
            later += 1
            ratios.append(round(t_grok / budget, 2))
        rows.append({"run_id": original.run_id, "wd": original.config["wd"], "budget": budget,
                     "t_grok": t_grok, "outcome_at_factor": run.outcome})  # fmt: skip
    checked = len(rows)
    report = {
        "checked": checked,
        "factor": factor,
        "grokked_later": later,
        "mislabel_rate": later / checked if checked else 0.0,
        "t_grok_over_budget": sorted(ratios),
        "same_prefix": same,
        "with_weight_decay": sum(r["wd"] > 0 for r in rows),
        "grokked_later_with_weight_decay": sum(
            r["wd"] > 0 and r["t_grok"] is not None for r in rows
        ),
        "runs": rows,
    }
    corpus_io.atomic_write(out / "report.json", (json.dumps(report, indent=2) + "\n").encode())
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
