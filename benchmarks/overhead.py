"""Agent overhead on an MLP, a transformer and an LSTM, side by side in one process.

Each model trains full batch (AdamW) on (a + b) mod 53 with half the pairs for 3000 steps,
without and with a ``grokwatch.Agent`` at its defaults (every built-in probe, the 1 % cap,
``budget=steps``, SQLite store in a temporary directory), one torch thread as in a sweep worker.
The bare and watched runs alternate (bare first in even repeats, watched first in odd ones), so
machine noise and drift hit both alike; the loop passes ``loss=loss`` as users do.

- ``mlp``: the reference run (seed-000 MLP, factorized first layer, ``trainer.train``);
- ``transformer``: one pre-LN block (4 heads, GELU MLP applied functionally), tokens
  ``[a, b, =]``, logits at every position ``(N, 3, p)`` (read at the last by the agent);
- ``lstm``: embedding -> LSTM(64) -> last state -> Linear.

For each model (``models`` in the JSON):

- ``default_overhead``: **the wall-clock overhead the goal is judged on**, the median over the
  interleaved pairs of watched wall / bare wall - 1, set-up and ``close`` included; with
  ``wall_overhead_pairs`` (every pair), ``wall_overhead_iqr`` and ``wall_overhead_ci95`` (a
  seeded bootstrap of the median), and ``noise_bare_pairs``: the same ratio between the bare runs
  of consecutive repeats, the machine's own noise;
- ``agent_share``: the agent's own measure of its share (what the cap bounds: time inside its
  calls plus its delivery thread's CPU), and ``agent_call_share``: the time in ``agent.step``
  seen from the loop, call overhead included;
- ``train_step_slowdown``: median training-step time (forward, backward, update; the agent's
  calls excluded) watched / bare - 1: a cost the agent leaves in the loop outside its own calls
  (hooks left installed, a busy thread) shows here;
- ``evaluations`` (all in the first 3000 steps), ``probe_runs`` (runs on all rows per probe),
  ``skipped_evaluations``, ``one_off_seconds``, ``background_seconds``, set-up and close, and
  the schedule's own estimates: ``core_probes``, ``core_evaluation_steps`` (one evaluation's
  core in training steps), ``evaluation_own_ms`` and ``bookkeeping_us_per_call``.

glibc's mmap and trim thresholds are pinned first (``--malloc fixed``, see :func:`fix_malloc`;
``faults_per_step_*`` record the page faults), so that the allocator's history does not decide
a run's speed.

For the MLP the fixed cadences of ``--every`` (no cap) also run in the first
``--cadence-repeats`` repeats, with each probe's cost per evaluation in training steps
(``probe_cost_in_train_steps``, at the first cadence).

    python benchmarks/overhead.py [--repeats 4] [--mlp-repeats 8] [--every 100 500] [--json OUT]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import itertools
import json
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from grokwatch import Agent
from trainer.config import RunConfig
from trainer.tasks import make_dataset
from trainer.train import build_model

P = 53


class Decoder(nn.Module):
    """One pre-LN transformer block over ``[a, b, =]``; logits at every position."""

    def __init__(self, p: int = P, d: int = 32, heads: int = 4, d_mlp: int = 128) -> None:
        super().__init__()
        self.p = p
        self.embed = nn.Embedding(p + 1, d)
        self.pos = nn.Parameter(torch.randn(3, d) / d**0.5)
        self.ln1, self.ln2, self.ln_f = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.mlp_in, self.mlp_out = nn.Linear(d, d_mlp), nn.Linear(d_mlp, d)
        self.head = nn.Linear(d, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eq = torch.full((len(x), 1), self.p, dtype=x.dtype, device=x.device)
        h = self.embed(torch.cat([x, eq], 1)) + self.pos  # (N, 3, d)
        a = self.ln1(h)
        h = h + self.attn(a, a, a, need_weights=False)[0]
        h = h + self.mlp_out(F.gelu(self.mlp_in(self.ln2(h))))
        return self.head(self.ln_f(h))  # (N, 3, p)


class LSTMClassifier(nn.Module):
    def __init__(self, p: int = P, d: int = 32, hidden: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(p, d)
        self.lstm = nn.LSTM(d, hidden, batch_first=True)
        self.head = nn.Linear(hidden, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(x))  # (N, 2, hidden)
        return self.head(out[:, -1])


def _last(logits: torch.Tensor) -> torch.Tensor:
    return logits[:, -1] if logits.dim() == 3 else logits


MODELS: dict[str, tuple[Callable[[], nn.Module], float, int]] = {
    # name: (build, learning rate, steps)
    "mlp": (lambda: build_model(RunConfig(p=P, op="add", frac=0.5)), 3e-3, 3000),
    "transformer": (Decoder, 1e-3, 3000),
    "lstm": (LSTMClassifier, 3e-3, 3000),
}


def one_run(
    name: str, steps: int, *, agent_kwargs: dict[str, Any] | None, db: Path
) -> dict[str, Any]:
    """Train once; with ``agent_kwargs`` an agent watches. Returns times and agent counters."""
    build, lr, _ = MODELS[name]
    torch.manual_seed(0)
    data = make_dataset(P, "add", 0.5, data_seed=0)
    model = build()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1.0, betas=(0.9, 0.98))
    clock = time.perf_counter
    start, cpu_start = clock(), time.process_time()
    agent = None
    if agent_kwargs is not None:
        agent = Agent(
            model,
            train=(data.train_x, data.train_y),
            test=(data.test_x, data.test_y),
            budget=steps,
            transport=db,
            **agent_kwargs,
        )
    setup = clock() - start
    train_times: list[float] = []
    agent_seconds = 0.0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    loop_start = clock()
    for step in range(steps):
        t0 = clock()
        loss = F.cross_entropy(_last(model(data.train_x)), data.train_y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        t1 = clock()
        train_times.append(t1 - t0)
        if agent is not None:
            agent.step(step, loss=loss)
            agent_seconds += clock() - t1
    loop = clock() - loop_start
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    out: dict[str, Any] = {
        "setup_seconds": setup,
        "train_step": statistics.median(train_times),
        "faults_per_step": faults / steps,
    }
    if agent is not None:
        out["agent_share"] = agent.overhead_ratio
        out["agent_call_share"] = agent_seconds / loop
        closing = clock()
        agent.close()
        out["close_seconds"] = clock() - closing
        summary = agent.summary()
        out["evaluations"] = agent.evaluations
        out["evaluated_steps"] = [s for s, _ in agent.history]
        out["skipped_evaluations"] = summary["skipped_evaluations"]
        out["one_off_seconds"] = summary["agent_one_off_seconds"]
        out["background_seconds"] = summary["agent_background_seconds"]
        out["agent_errors"] = agent.errors
        out["probe_seconds"] = dict(agent.probe_seconds)
        out["probe_runs"] = {p.name: agent.probe_runs.get(p.name, 0) for p in agent.probes}
        schedule = agent._schedule  # the schedule's estimates, for the record
        core = [p for p in agent.probes if schedule.core(p)]
        out["core_probes"] = [p.name for p in core]
        out["core_ms"] = 1000 * (schedule.eval_cost + schedule.predicted(core))
        out["evaluation_own_ms"] = 1000 * schedule.eval_cost
        out["call_us"] = 1e6 * schedule.bookkeeping() / steps
    out["wall"] = clock() - start
    out["cpu"] = time.process_time() - cpu_start
    return out


def fix_malloc() -> bool:
    """Pin glibc's mmap and trim thresholds (Linux only; returns whether it could).

    By default glibc moves its mmap threshold with the sizes of the chunks freed, so the same
    3000 training steps can page-fault 4 or 150 times a step depending on what the process
    allocated before: in one process the bare runs of the MLP then differ by up to 12 %. With
    the thresholds pinned, large buffers come from the heap and stay there, for the bare and the
    watched runs alike.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)
        ok &= libc.mallopt(m_trim_threshold, 512 * 1024 * 1024)
    except (OSError, AttributeError):
        return False
    return bool(ok)


def _median_ci(values: list[float], seed: int = 0, draws: int = 2000) -> tuple[float, float]:
    """A seeded percentile bootstrap 95 % interval of the median of ``values``."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(draws))
    return medians[int(0.025 * draws)], medians[int(0.975 * draws) - 1]


def _quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4, help="interleaved pairs per model")
    parser.add_argument("--mlp-repeats", type=int, default=8, help="pairs for the (cheap) MLP")
    parser.add_argument("--cadence-repeats", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every model's steps")
    parser.add_argument("--every", type=int, nargs="*", default=[100, 500], help="MLP cadences")
    parser.add_argument(
        "--malloc", choices=("fixed", "default"), default="fixed", help="see fix_malloc"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    malloc_fixed = args.malloc == "fixed" and fix_malloc()
    torch.set_num_threads(1)
    steps = {name: max(50, int(s * args.scale)) for name, (_, _, s) in MODELS.items()}
    repeats = {name: args.repeats for name in MODELS} | {"mlp": args.mlp_repeats}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {"bare": [], "default": []} for name in MODELS
    }
    for every in args.every:
        runs["mlp"][f"every_{every}"] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            one_run(name, 20, agent_kwargs={}, db=Path(tmp) / "warm.db")  # warm-up
        for i in range(max(repeats.values())):
            for name in MODELS:
                if i >= repeats[name]:
                    continue
                order: list[tuple[str, dict[str, Any] | None]] = [("bare", None), ("default", {})]
                if name == "mlp" and i < args.cadence_repeats:
                    order += [(f"every_{e}", {"every": e}) for e in args.every]
                if i % 2:
                    order.reverse()
                for variant, kwargs in order:
                    db = Path(tmp) / f"{name}-{variant}-{i}.db"
                    runs[name][variant].append(
                        one_run(name, steps[name], agent_kwargs=kwargs, db=db)
                    )
            print(f"repeat {i + 1} done at {time.perf_counter() - started:.0f} s", flush=True)

    def pairs(name: str, variant: str, key: str) -> list[float]:
        bare = runs[name]["bare"]
        return [w[key] / b[key] - 1 for w, b in zip(runs[name][variant], bare, strict=False)]

    result: dict[str, Any] = {
        "repeats": repeats,
        "threads": 1,
        "goal": "default_overhead (median paired wall-clock overhead) <= 0.01",
        "malloc_thresholds_fixed": malloc_fixed,
        "models": {},
    }
    print(f"agent overhead at the defaults, interleaved pairs {repeats}, 1 thread")
    for name in MODELS:
        watched, bare = runs[name]["default"], runs[name]["bare"]
        wall = pairs(name, "default", "wall")
        noise = [a["wall"] / b["wall"] - 1 for a, b in itertools.pairwise(bare)]
        probe_names = list(watched[0]["probe_runs"])
        entry = {
            "steps": steps[name],
            "train_step_ms": 1000 * statistics.median(r["train_step"] for r in bare),
            "default_overhead": statistics.median(wall),
            "wall_overhead_pairs": wall,
            "wall_overhead_iqr": list(_quartiles(wall)),
            "wall_overhead_ci95": list(_median_ci(wall)),
            "noise_bare_pairs": noise,
            "agent_share": statistics.median(r["agent_share"] for r in watched),
            "agent_call_share": statistics.median(r["agent_call_share"] for r in watched),
            "train_step_slowdown": statistics.median(pairs(name, "default", "train_step")),
            "faults_per_step_bare": statistics.median(r["faults_per_step"] for r in bare),
            "faults_per_step_watched": statistics.median(r["faults_per_step"] for r in watched),
            "cpu_overhead": statistics.median(pairs(name, "default", "cpu")),
            "evaluations": statistics.median(r["evaluations"] for r in watched),
            "evaluations_each_run": [r["evaluations"] for r in watched],
            "evaluated_steps": watched[0]["evaluated_steps"],
            "probe_runs": {
                p: statistics.median(r["probe_runs"].get(p, 0) for r in watched)
                for p in probe_names
            },
            "core_probes": watched[-1]["core_probes"],
            "core_evaluation_steps": statistics.median(r["core_ms"] for r in watched)
            / (1000 * statistics.median(r["train_step"] for r in watched)),
            "evaluation_own_ms": statistics.median(r["evaluation_own_ms"] for r in watched),
            "bookkeeping_us_per_call": statistics.median(r["call_us"] for r in watched),
            "skipped_evaluations": statistics.median(r["skipped_evaluations"] for r in watched),
            "one_off_seconds": statistics.median(r["one_off_seconds"] for r in watched),
            "background_seconds": statistics.median(r["background_seconds"] for r in watched),
            "setup_seconds": statistics.median(r["setup_seconds"] for r in watched),
            "close_seconds": statistics.median(r["close_seconds"] for r in watched),
            "agent_errors": max(r["agent_errors"] for r in watched),
            "bare_wall": [r["wall"] for r in bare],
            "default_wall": [r["wall"] for r in watched],
        }
        result["models"][name] = entry
        lo, hi = entry["wall_overhead_ci95"]
        print(
            f"{name:<12} {steps[name]} steps of {entry['train_step_ms']:.2f} ms: wall "
            f"{100 * entry['default_overhead']:+.2f} % (95 % CI {100 * lo:+.2f} .. "
            f"{100 * hi:+.2f}; bare-vs-bare noise {', '.join(f'{100 * x:+.1f}' for x in noise)}"
            f" %); agent's own share {100 * entry['agent_share']:.2f} %, calls seen from the "
            f"loop {100 * entry['agent_call_share']:.2f} %, training steps "
            f"{100 * entry['train_step_slowdown']:+.2f} %; {entry['evaluations']:.0f} "
            f"evaluations ({entry['skipped_evaluations']:.0f} grid steps skipped)"
        )
    # the reference MLP at fixed cadences without a cap, and each probe's cost
    mlp_steps = steps["mlp"]
    step_seconds = statistics.median(r["train_step"] for r in runs["mlp"]["bare"])
    result.update({"steps": mlp_steps, "train_step_ms": 1000 * step_seconds, "cadences": {}})
    for every in args.every:
        variant = f"every_{every}"
        wall, cpu = pairs("mlp", variant, "wall"), pairs("mlp", variant, "cpu")
        result["cadences"][str(every)] = {
            "times": [(r["wall"], r["cpu"]) for r in runs["mlp"][variant]],
            "wall_ratio_median": 1 + statistics.median(wall),
            "cpu_ratio_median": 1 + statistics.median(cpu),
        }
        print(
            f"mlp every {every:>4} (no cap): wall {100 * statistics.median(wall):+.2f} %, "
            f"CPU {100 * statistics.median(cpu):+.2f} %"
        )
    if args.every:
        first = runs["mlp"][f"every_{args.every[0]}"][-1]
        result["evaluations_at_first_cadence"] = first["evaluations"]
        result["probe_cost_in_train_steps"] = {
            k: v / first["evaluations"] / step_seconds for k, v in first["probe_seconds"].items()
        }
        print(f"per-probe cost per evaluation at every={args.every[0]}, in training steps:")
        for k, v in sorted(result["probe_cost_in_train_steps"].items(), key=lambda kv: -kv[1]):
            print(f"  {k:<22} {v:6.3f}")
    result["seconds"] = time.perf_counter() - started
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
