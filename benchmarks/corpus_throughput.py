"""Corpus throughput: our sweep path against a naive baseline, side by side in one run.

The same runs are trained twice, each with a ``grokwatch.Agent`` attached exactly as in the
corpus (every built-in probe, ``every`` 50):

- **baseline**: the unfactorized first layer (``Linear(concat(E[a], E[b]))``), one run after
  the other in this process, torch's default thread count;
- **ours**: the factorized first layer, ``trainer.sweep``'s local spawn pool with one torch
  thread per worker and as many workers as the CPU quota allows.

The runs are a seeded sample of ``--runs`` runs of the training spec (so the mix of moduli,
widths and depths is the corpus's own) with the budget fixed to ``--steps`` and no early stop,
so both sides do the same number of optimizer steps. Reports model-steps per second, runs per
hour at the corpus's mean run length (measured from a corpus directory if one is given), the
speed-up, and the fraction of the measured single-thread matmul peak that the training matmuls
reach (wall time includes the agent's probes, which are the same on both sides).

It also prices the *ceiling*: the matmuls of every step timed alone (:func:`step_matmuls`)
plus the probe time ours measured, spread over the CPU quota with perfect scaling. That is
the speed no implementation of the same model and probes in float32 beats on this machine,
and it says how far the ≥ 3× target is reachable here at all.

    python benchmarks/corpus_throughput.py [--runs 8] [--steps 600] [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import torch

from trainer.spec import RunTask, load_spec
from trainer.sweep import RunResult, cpu_quota, execute, local_executor, run_one

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


def step_flops(config: dict[str, Any]) -> float:
    """Matmul FLOPs of one full-batch training step (forward + backward ≈ 3 × forward).

    Factorized: the first layer multiplies the p embedding rows, (p, d_emb) @ (d_emb, H) for
    each operand; unfactorized: the N training rows, (N, 2·d_emb) @ (2·d_emb, H). Both then run
    (N, H) @ (H, H) at depth 2 and (N, H) @ (H, p). Without an embedding, d_emb is p (one-hot).
    """
    p, h = config["p"], config["d_hidden"]
    n_pairs = p * (p - 1) if config["op"] == "div" else p * p
    n = round(config["frac"] * n_pairs)
    d_in = config["d_emb"] if config["embedding"] else p
    first = 2 * p * d_in * h * 2 if config["factorized"] else 2 * n * 2 * d_in * h
    rest = 2 * n * h * p + (2 * n * h * h if config["depth"] == 2 else 0)
    return 3.0 * (first + rest)


def step_matmuls(config: dict[str, Any], reps: int = 30) -> float:
    """Seconds the matmuls of one factorized training step take alone, at one thread.

    Every GEMM of the step with its real shapes -- forward, input gradient and weight gradient
    of the output layer, the second hidden layer at depth 2 and the two embedding projections
    -- on random operands, nothing else: no loss, activation, gather, optimizer or probe. No
    implementation of this model in float32 trains a step faster than this on this CPU.
    """
    p, h = config["p"], config["d_hidden"]
    n_pairs = p * (p - 1) if config["op"] == "div" else p * p
    n = round(config["frac"] * n_pairs)
    layers = [(n, h, p)] + ([(n, h, h)] if config["depth"] == 2 else [])
    if config["embedding"]:
        layers += [(p, config["d_emb"], h)] * 2
    pairs = []
    for m, k, out in layers:  # (m, k) @ (k, out) and its two gradients
        pairs += [((m, k), (k, out)), ((m, out), (out, k)), ((k, m), (m, out))]
    mats = [(torch.randn(a), torch.randn(b)) for a, b in pairs]
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for a, b in mats:
            a @ b
        best = math.inf
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(reps):
                for a, b in mats:
                    a @ b
            best = min(best, (time.perf_counter() - t0) / reps)
        return best
    finally:
        torch.set_num_threads(old)


def bench_tasks(
    spec_path: Path, runs: int, steps: int, *, factorized: bool, threads: int | None
) -> list[RunTask]:
    # a seeded sample of the spec's runs, not its first draws: the corpus's own mix
    every = load_spec(spec_path).tasks()
    tasks = random.Random(0).sample(every, len(every))[:runs]  # a larger --runs extends it
    out = []
    for t in tasks:
        config = {**t.config, "steps": steps, "factorized": factorized}
        out.append(
            dataclasses.replace(
                t,
                run_id=f"{t.run_id}-{'f' if factorized else 'u'}{threads}",
                config=config,
                tail=1e9,  # no early stop: both sides do every step
                threads=threads,  # None: torch's default thread count
            )
        )
    return out


def side(
    name: str, tasks: list[RunTask], *, pool: bool, workdir: Path, threads: int
) -> dict[str, Any]:
    t0 = time.perf_counter()
    if pool:
        executor = local_executor(cpu_quota())
        try:
            # warm the workers (spawn + import torch) outside the timed region, as a long
            # sweep amortizes it
            list(executor.map(_noop, range(cpu_quota())))
            t0 = time.perf_counter()
            execute(tasks, workdir / name, executor=executor, progress=False)
        finally:
            executor.shutdown()
        results = [_read(workdir / name, t.run_id) for t in tasks]
    else:
        results = [run_one(t) for t in tasks]
    wall = time.perf_counter() - t0
    failed = [r for r in results if r.status != "ok"]
    if failed:
        raise RuntimeError(f"{name}: {len(failed)} runs failed: {failed[0].error}")
    steps = sum(r.steps_run for r in results)
    flops = sum(step_flops(r.task.config) * r.steps_run for r in results)
    measure = sum(r.agent["measure_seconds"] for r in results)
    return {
        "side": name,
        "wall_s": wall,
        "steps": steps,
        "steps_per_s": steps / wall,
        "train_gflops": flops / wall / 1e9,
        "probe_seconds": measure,
        "threads": threads,
        "processes": cpu_quota() if pool else 1,
    }


def _noop(_: int) -> None:
    return None


def _read(directory: Path, run_id: str) -> RunResult:
    from trainer.corpus import read_run, run_path

    run = read_run(run_path(directory, run_id))
    task = RunTask(run_id, "", "mlp", "", dict(run.config), 50, 0.0, 0, 2048)
    return RunResult(task, run.status, steps_run=int(run.meta["steps_run"]),
                     agent=dict(run.meta.get("agent") or {}))  # fmt: skip


def mean_run_steps(corpus_dir: Path | None) -> float | None:
    if corpus_dir is None or not (corpus_dir / "corpus.json").exists():
        return None
    from trainer.corpus import load

    c = load(corpus_dir, family="mlp")
    return sum(int(r.meta["steps_run"]) for r in c) / max(len(c), 1)


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "trainer/specs/mlp-train.json")
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--corpus", type=Path, default=ROOT / "trainer/data/corpus")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import tempfile

    peak = matmul_peak()
    load_before = os.getloadavg()[0]
    default_threads = torch.get_num_threads()
    # (name, factorized, torch threads, pool): the baseline, two in-process steps that
    # separate the first layer from the thread setting, and the sweep's own path
    plan = [
        ("baseline", False, None, False),
        ("unfactorized, 1 thread", False, 1, False),
        ("factorized, 1 thread", True, 1, False),
        ("ours", True, 1, True),
    ]
    sides = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, factorized, threads, pool in plan:
            tasks = bench_tasks(args.spec, args.runs, args.steps, factorized=factorized,
                                threads=threads)  # fmt: skip
            sides.append(side(name, tasks, pool=pool, workdir=Path(tmp),
                              threads=threads or default_threads))  # fmt: skip
    base, ours = sides[0], sides[-1]
    # The ceiling: every run's matmuls at full single-thread speed plus the probes as ours
    # measured them, on perfectly scaling processes -- nothing else of a step costs anything.
    tasks = bench_tasks(args.spec, args.runs, args.steps, factorized=True, threads=1)
    matmul_s = sum(step_matmuls(t.config) for t in tasks) * args.steps
    probe_s = ours["probe_seconds"]
    ceiling = cpu_quota() * ours["steps"] / (matmul_s + probe_s)
    run_len = mean_run_steps(args.corpus)
    for s in sides:
        s["peak_fraction"] = s["train_gflops"] / (peak * s["processes"])
        if run_len:
            s["runs_per_hour"] = 3600 * s["steps_per_s"] / run_len
    report = {
        "runs": args.runs,
        "steps_per_run": args.steps,
        "cpu_quota": cpu_quota(),
        "matmul_peak_gflops_per_thread": peak,
        "load_average_before": load_before,
        "mean_corpus_run_steps": run_len,
        "sides": sides,
        "speedup": ours["steps_per_s"] / base["steps_per_s"],
        "ceiling": {
            "matmul_seconds": matmul_s,
            "probe_seconds": probe_s,
            "steps_per_s": ceiling,
            "speedup": ceiling / base["steps_per_s"],
            "speedup_without_probes": cpu_quota() * ours["steps"] / matmul_s / base["steps_per_s"],
        },
    }
    print(f"matmul peak (1 thread): {peak:.1f} GFLOP/s | CPU quota {cpu_quota()} | "
          f"load before {load_before:.2f}")  # fmt: skip
    print("| side | processes × threads | model-steps/s | × baseline | runs/hour | "
          "training GFLOP/s | % of peak | probe s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for s in sides:
        rph = f"{s['runs_per_hour']:.0f}" if "runs_per_hour" in s else "n/a"
        ratio = s["steps_per_s"] / base["steps_per_s"]
        print(f"| {s['side']} | {s['processes']} × {s['threads']} | {s['steps_per_s']:.0f} | "
              f"{ratio:.2f} | {rph} | {s['train_gflops']:.1f} | "
              f"{100 * s['peak_fraction']:.0f} % | {s['probe_seconds']:.1f} |")  # fmt: skip
    print(f"speed-up: {report['speedup']:.2f}×")
    c = report["ceiling"]
    print(f"ceiling (matmuls alone {c['matmul_seconds']:.1f} s + probes {c['probe_seconds']:.1f} s "
          f"on {cpu_quota()} ideal processes): {c['steps_per_s']:.0f} model-steps/s = "
          f"{c['speedup']:.2f}× the baseline ({c['speedup_without_probes']:.2f}× without the "
          f"probes)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
