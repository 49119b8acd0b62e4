"""Corpus throughput: the v2 sweep path against the naive sweep, side by side in one run.

The same runs are trained four ways, each with a ``grokwatch.Agent`` attached exactly as in
the corpus (every built-in probe, ``every`` 50), no early stop, ``--steps`` steps each:

- **naive**: one run after the other in this process, the MLP's unfactorized first layer
  (``Linear(concat(E[a], E[b]))``): the v1 issue's baseline. Twice, with torch's default
  thread count and with one thread: the default's threads wait for each other as soon as
  anything else runs on the machine, so the baseline of ``speedup`` is whichever naive side
  was faster in this invocation (never the one that flatters ours);
- **pool, one run at a time**: corpus v1's path (``trainer.sweep`` with ``--stack 1``): the
  spawn pool, one torch thread per worker, the heap kept, the factorized first layer;
- **ours as committed**: corpus v2's path as it trained the committed corpus (``--stack N``):
  the same pool, each task a stack of N runs of one shape trained at once
  (``trainer.stacked``: ``torch.func.stack_module_state`` + ``vmap``), each run watched by its
  own agent running every probe on its own model, stacks started with families taking turns;
- **+ batched probes**: the same, with the agents' three costliest probes computed for the
  whole stack at once (``trainer.stacked_probes``; training is bitwise the same);
- **ours** (the last side, the one ``speedup`` reports): batched probes and the stacks started
  longest first (``--order longest``), so the two workers finish together as they do in a
  sweep of some 200 stacks.

The runs are whole stacks of the v2 corpus's own plan (``trainer.sweep.plan_stacks`` over the
v2 specs): the first ``--stacks`` full stacks of ``--stack`` runs of each family named by
``--families`` (every family of the corpus, two stacks each by default: the sweep has some 170
stacks, so its pool is never left with one long stack while the other worker idles, and the
benchmark should not be either). Reports model-steps per second, the speed-up over the naive
side (the top-level ``speedup`` of the JSON), each side's busy fraction and its seconds per
model-step family by family (how much of them the agent took), and the fraction of the
measured single-thread matmul peak reached by the training FLOPs (forward + backward of every
step, counted by ``torch.utils.flop_counter`` on each run's own model and batch; the agent's
probes are in the wall time, not the FLOPs).

    python -m benchmarks.corpus_throughput --json benchmarks/results/corpus/throughput.json
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.report_io import write_report
from trainer.corpus import read_run, run_path
from trainer.cpus import cpu_quota
from trainer.executors import local_executor
from trainer.families import FAMILIES, build
from trainer.runner import RunResult, run_one
from trainer.spec import RunTask, load_spec
from trainer.stacked import run_stack, run_stack_probes_per_run, stack_key
from trainer.sweep import execute, plan_stacks

ROOT = Path(__file__).resolve().parents[1]


def matmul_peak(n: int = 512, reps: int = 40) -> float:
    """Single-thread float32 matmul throughput, GFLOP/s (the best of three timings)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        for _ in range(3):
            a @ b
        best = 0.0
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
        return best
    finally:
        torch.set_num_threads(old)


def step_flops(task: RunTask) -> float:
    """FLOPs of one training step of the run (forward and backward, its own batch)."""
    config = FAMILIES[task.family].config_cls.from_dict(task.config)
    torch.manual_seed(0)
    model, data, loss_fn = build(config)
    x, y = data.train_x, data.train_y
    batch = getattr(config, "batch_size", 0)
    if batch:
        x, y = x[:batch], y[:batch]
    with FlopCounterMode(display=False) as counter:
        loss_fn(model(x), y).mean().backward()
    return float(counter.get_total_flops())


def bench_tasks(families: list[str], runs: int, steps: int, stacks: int = 1) -> list[RunTask]:
    """The first `stacks` full stacks of each family in the v2 plan, `runs` runs each, `steps`
    steps, no early stop (both sides then train exactly the same steps)."""
    specs = sorted((ROOT / "trainer/specs/v2").glob("*.json"))
    tasks = [t for path in specs for t in load_spec(path).tasks()]
    plan = plan_stacks(tasks, runs)
    chosen: list[RunTask] = []
    for family in families:
        full = [s for s in plan if s[0].family == family and len(s) == runs][:stacks]
        chosen += [
            dataclasses.replace(
                t, run_id=f"{t.run_id}-bench", config={**t.config, "steps": steps}, tail=1e9
            )
            for stack in full
            for t in stack
        ]
    return chosen


def naive(task: RunTask, threads: int | None = None) -> RunTask:
    """The naive side's version of a run: unfactorized MLP, `threads` (None: torch's default)."""
    config = dict(task.config)
    if "factorized" in config:
        config["factorized"] = False
    return dataclasses.replace(task, config=config, threads=threads)


def warm_up(task: RunTask) -> RunTask:
    """A few steps of `task` under another id: run untimed first, so that no side pays the
    imports and first calls that a long sweep pays once."""
    return dataclasses.replace(task, run_id=f"{task.run_id}-warm-up",
                               config={**task.config, "steps": 3})  # fmt: skip


def side(
    name: str,
    tasks: list[RunTask],
    *,
    stack: int,
    workdir: Path,
    order: str = "turns",
    stack_fn: Callable[..., list[RunResult]] = run_stack,
) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    if stack == 0:  # in this process, one run after the other
        run_one(warm_up(tasks[0]))
        t0 = time.perf_counter()
        results = [run_one(t) for t in tasks]
        wall = time.perf_counter() - t0
        failed = [r.error for r in results if r.status != "ok"]
        runs = [(r.task.family, r.steps_run, r.wall_time, r.agent.get("measure_seconds", 0.0))
                for r in results]  # fmt: skip
        processes, threads = 1, tasks[0].threads or torch.get_num_threads()
    else:
        executor = local_executor(cpu_quota())
        try:
            # warm the workers (spawn, imports, the agent's first use) outside the timed
            # region, as a long sweep amortizes it
            list(executor.map(run_one, [warm_up(tasks[0])] * cpu_quota()))
            if stack > 1:  # and the stacked path's first vmap calls, its probes included
                pair = [warm_up(t) for t in tasks if stack_key(t) == stack_key(tasks[0])][:2]
                list(executor.map(stack_fn, [pair] * cpu_quota()))
            t0 = time.perf_counter()
            execute(tasks, workdir / name, executor=executor, progress=False, stack=stack,
                    order=order, stack_fn=stack_fn)  # fmt: skip
            wall = time.perf_counter() - t0
        finally:
            executor.shutdown()
        stored = [read_run(run_path(workdir / name, t.run_id)) for t in tasks]
        failed = [r.meta["error"] for r in stored if r.status != "ok"]
        runs = [
            (r.meta["family"], int(r.meta["steps_run"]), float(r.meta["wall_time"]),
             float(r.meta["agent"].get("measure_seconds", 0.0)))
            for r in stored
        ]  # fmt: skip
        processes, threads = cpu_quota(), 1
    if failed:
        raise RuntimeError(f"{name}: {len(failed)} runs failed: {failed[0]}")
    # Where the time goes, family by family: each run's seconds (alone: its whole run_one;
    # stacked: its share of its stack's steps plus its own agent) and its agent's seconds.
    by_family: dict[str, dict[str, float]] = {}
    for family, steps_run, seconds, probe in runs:
        row = by_family.setdefault(family, {"model_steps": 0, "run_s": 0.0, "probe_s": 0.0})
        row["model_steps"] += steps_run
        row["run_s"] += seconds
        row["probe_s"] += probe
    steps = sum(r[1] for r in runs)
    run_seconds = sum(r[2] for r in runs)
    return {
        "side": name,
        "load_average_before": load_before,
        "stack": stack,
        "order": order if stack > 1 else None,
        "batched_probes": stack > 1 and stack_fn is run_stack,
        "processes": processes,
        "threads": threads,
        "wall_s": wall,
        "model_steps": steps,
        "model_steps_per_s": steps / wall,
        "probe_seconds": sum(r[3] for r in runs),
        # the runs' own seconds over the workers' wall: < 1 when workers sat idle (too few
        # units of work to balance) or the time went outside the runs (set-up, writing)
        "busy_fraction": run_seconds / (wall * processes),
        "by_family": by_family,
    }


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="mlp,onehot,perm,transformer,digits,parity")
    parser.add_argument("--stack", type=int, default=16, help="runs per stack")
    parser.add_argument("--stacks", type=int, default=2, help="stacks per family")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    peak = matmul_peak()
    load_before = os.getloadavg()[0]
    tasks = bench_tasks(args.families.split(","), args.stack, args.steps, args.stacks)
    flops_ours = {t.run_id: step_flops(t) for t in tasks}
    flops_naive = {t.run_id: step_flops(naive(t)) for t in tasks}
    sides = []
    with tempfile.TemporaryDirectory() as tmp:
        plan: list[tuple[str, list[RunTask], int, dict[str, float], dict[str, Any]]] = [
            ("naive", [naive(t) for t in tasks], 0, flops_naive, {}),
            ("naive, one thread", [naive(t, 1) for t in tasks], 0, flops_naive, {}),
            ("pool, one run at a time", tasks, 1, flops_ours, {}),
            ("ours as committed: pool + stacked", tasks, args.stack, flops_ours,
             {"stack_fn": run_stack_probes_per_run}),
            ("stacked + batched probes", tasks, args.stack, flops_ours, {}),
            ("ours: stacked + batched probes, longest first", tasks, args.stack, flops_ours,
             {"order": "longest"}),
        ]  # fmt: skip
        for name, side_tasks, stack, flops, options in plan:
            row = side(name, side_tasks, stack=stack, workdir=Path(tmp), **options)
            total = sum(flops.values()) * args.steps
            row["train_gflops"] = total / row["wall_s"] / 1e9
            row["peak_fraction"] = row["train_gflops"] / (peak * row["processes"])
            sides.append(row)
    base = max(sides[:2], key=lambda r: r["model_steps_per_s"])  # the faster naive side
    ours = sides[-1]
    for row in sides:
        row["speedup"] = row["model_steps_per_s"] / base["model_steps_per_s"]
    report = {
        "families": args.families.split(","),
        "runs": len(tasks),
        "stack": args.stack,
        "stacks_per_family": args.stacks,
        "steps_per_run": args.steps,
        "cpu_quota": cpu_quota(),
        "matmul_peak_gflops_per_thread": peak,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "sides": sides,
        "baseline": base["side"],
        "speedup": ours["model_steps_per_s"] / base["model_steps_per_s"],
        "speedup_as_committed": sides[3]["model_steps_per_s"] / base["model_steps_per_s"],
        "peak_fraction": ours["peak_fraction"],
    }
    print(f"matmul peak (1 thread): {peak:.1f} GFLOP/s | CPU quota {cpu_quota()} | "
          f"load before {load_before:.2f}, after {report['load_average_after']:.2f}")  # fmt: skip
    print("| side | processes × threads | runs per task | model-steps/s | × naive | "
          "training GFLOP/s | % of matmul peak | probe s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in sides:
        print(f"| {r['side']} | {r['processes']} × {r['threads']} | {max(r['stack'], 1)} | "
              f"{r['model_steps_per_s']:.0f} | {r['speedup']:.2f} | {r['train_gflops']:.1f} | "
              f"{100 * r['peak_fraction']:.0f} % | {r['probe_seconds']:.1f} |")  # fmt: skip
    print(f"speed-up: {report['speedup']:.2f}× (over {base['side']!r})")
    write_report(args.json, report)
    return report


if __name__ == "__main__":
    main()
