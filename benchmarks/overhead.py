"""Agent overhead on an MLP, a transformer and an LSTM: bare and watched training interleaved
in blocks of a few steps, in one process.

Each model trains full batch (AdamW) on (a + b) mod 53 with half the pairs for 3000 steps, with
a ``grokwatch.Agent`` at its defaults (every built-in probe, the 1 % cap, ``budget=steps``, SQLite
store in a temporary directory), one torch thread as in a sweep worker.

- ``mlp``: the reference run (seed-000 MLP, factorized first layer, ``trainer.train``);
- ``transformer``: one pre-LN block (4 heads, GELU MLP applied functionally), tokens
  ``[a, b, =]``, logits at every position ``(N, 3, p)`` (read at the last by the agent);
- ``lstm``: embedding -> LSTM(64) -> last state -> Linear.

**The method.** Whole bare and watched runs differ by up to 15 % on a shared machine (the noise
of consecutive identical runs), which no number of pairs narrows to the 1 % the goal is about.
So two identical copies of the model (same seed, same data, their own optimizers) train side by
side in one process: the *bare* copy and the *watched* one, whose loop calls ``agent.step``.
They take turns in blocks of ``--block`` steps (10: the grid's spacing below step 1000, so every
evaluation falls on the first step of a watched block and the training steps it disturbs follow
it in the same block), in the order ABBA (pair k covers steps ``[10 k, 10 k + 10)`` of both
copies; bare first in even pairs, watched first in odd ones), and every block is timed. Machine
drift slower than a block pair cancels in the pair's difference. The agent's clock is stopped
while the bare copy trains (the benchmark swaps in a clock that skips the bare blocks), so it
sees exactly the loop of a run of its own and schedules as it would there. Both copies end with
the same weights, bit for bit (``weights_equal``).

What the watched side is charged, beyond its blocks:

- set-up (the ``Agent`` constructor) and ``close``;
- the CPU time its delivery thread spent while a bare block ran (taken off that bare block);
- *spill-over*: an evaluation that leaves cold caches behind may slow the block after it. In
  ABBA order the bare blocks of odd pairs follow a watched block and those of even pairs follow
  a bare one. A bare block's excess over its two neighbours (even pairs, not after a watched
  block) is compared between the odd pairs whose watched block evaluated and those whose did
  not; the difference (if positive) times the number of bare blocks that followed an evaluation
  is added to the watched side.

``default_overhead`` = (watched blocks + charges) / bare blocks - 1, pooled over the repeats;
``overhead_ci95`` a seeded bootstrap over block pairs (stratified by whether the pair's watched
block evaluated and whether its bare block followed the watched one, the spill-over estimated
again in each draw). ``aa_overhead`` is the same estimate with no agent on either copy: the
method's own bias and noise (it should be 0 within its interval).

For each model (``models`` in the JSON) also: ``agent_share`` (the agent's own measure, what
the cap bounds), ``agent_call_share`` (time in ``agent.step`` seen from the loop),
``train_step_slowdown`` (median training step, the agent's calls excluded, watched / bare - 1),
page faults a step, evaluations and where they fell, ``probe_runs``, the schedule's estimates
(``core_probes``, ``core_evaluation_steps``: one evaluation's core in training steps,
``evaluation_own_ms``, ``bookkeeping_us_per_call``).

For the MLP the fixed cadences of ``--every`` (no cap) also run, the same way, with each probe's
cost per evaluation in training steps (``probe_cost_in_train_steps``, at the first cadence).

Run it per model under the quiet lock, one CPU; each run updates its models in the JSON:

    taskset -c 1 python -m benchmarks.overhead --models mlp --json benchmarks/results/overhead.json
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
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


BLOCK = 10
"""Steps per block: the default grid's spacing below step 1000 (multiples of 10 above it)."""


def _train_block(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    agent: Agent | None,
    steps: range,
    data: tuple[torch.Tensor, torch.Tensor],
    train_times: list[float],
) -> float:
    """Train ``steps`` (calling ``agent.step`` after each, when given); the seconds in its calls."""
    clock = time.perf_counter
    x, y = data
    calls = 0.0
    for step in steps:
        t0 = clock()
        loss = F.cross_entropy(_last(model(x)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        t1 = clock()
        train_times.append(t1 - t0)
        if agent is not None:
            agent.step(step, loss=loss)
        calls += clock() - t1
    return calls


def interleaved(
    name: str,
    steps: int,
    *,
    agent_kwargs: dict[str, Any] | None,
    db: Path,
    block: int = BLOCK,
    swap: bool = False,
) -> dict[str, Any]:
    """Train a bare and a watched copy of model ``name`` in alternating blocks (see the module
    docstring); ``agent_kwargs=None``: no agent on either copy (the A/A control). ``swap``: the
    copy built first is the watched one (repeats alternate, so where each copy's memory lies
    does not favour one side)."""
    build, lr, _ = MODELS[name]
    dataset = make_dataset(P, "add", 0.5, data_seed=0)
    data = (dataset.train_x, dataset.train_y)
    copies = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1.0, betas=(0.9, 0.98))
        copies.append((model, opt))
    (bare, bare_opt), (watched, watched_opt) = copies[::-1] if swap else copies
    clock = time.perf_counter
    paused = 0.0  # seconds of bare blocks so far: the watched run's clock skips them

    def watched_clock() -> float:
        return clock() - paused

    agent, setup = None, 0.0
    if agent_kwargs is not None:
        started = clock()
        agent = Agent(
            watched,
            train=data,
            test=(dataset.test_x, dataset.test_y),
            budget=steps,
            transport=db,
            **agent_kwargs,
        )
        setup = clock() - started
        agent._schedule.clock = agent._clock = watched_clock  # before its first call

    def background() -> float:
        return 0.0 if agent is None else agent.transport.stats.busy_seconds

    pairs = -(-steps // block)
    blocks: dict[str, list[float]] = {"bare": [0.0] * pairs, "watched": [0.0] * pairs}
    cpu: dict[str, list[float]] = {"bare": [0.0] * pairs, "watched": [0.0] * pairs}
    background_in_bare = [0.0] * pairs
    evaluated = [0] * pairs
    train_times: dict[str, list[float]] = {"bare": [], "watched": []}
    faults = {"bare": 0, "watched": 0}
    calls = 0.0
    for k in range(pairs):
        span = range(k * block, min((k + 1) * block, steps))
        for side in ("bare", "watched") if k % 2 == 0 else ("watched", "bare"):
            evaluations = 0 if agent is None else agent.evaluations
            busy = background()
            minflt = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0, c0 = clock(), time.thread_time()
            if side == "bare":
                _train_block(bare, bare_opt, None, span, data, train_times[side])
            else:
                calls += _train_block(watched, watched_opt, agent, span, data, train_times[side])
            seconds = clock() - t0
            cpu[side][k] = time.thread_time() - c0
            faults[side] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - minflt
            blocks[side][k] = seconds
            if side == "bare":
                paused += seconds
                background_in_bare[k] = background() - busy
            elif agent is not None:
                evaluated[k] = agent.evaluations - evaluations
    out: dict[str, Any] = {
        "bare_blocks": blocks["bare"],
        "watched_blocks": blocks["watched"],
        "background_in_bare": background_in_bare,
        "bare_cpu": cpu["bare"],
        "watched_cpu": cpu["watched"],
        "background_seconds": 0.0,
        "evaluations_in_block": evaluated,
        "setup_seconds": setup,
        "train_step_bare": statistics.median(train_times["bare"]),
        "train_step_watched": statistics.median(train_times["watched"]),
        "faults_per_step_bare": faults["bare"] / steps,
        "faults_per_step_watched": faults["watched"] / steps,
        "weights_equal": all(
            torch.equal(a, b) for a, b in zip(bare.parameters(), watched.parameters(), strict=True)
        ),
        "close_seconds": 0.0,
    }
    if agent is not None:
        loop = sum(blocks["watched"])
        out["agent_share"] = agent.overhead_ratio
        out["agent_call_share"] = calls / loop
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


def block_overhead(
    runs: Sequence[dict[str, Any]], *, clock: str = "cpu", draws: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """The watched side's overhead over the block pairs of ``runs`` (pooled), with the charges
    of the module docstring and a stratified bootstrap 95 % interval.

    ``clock="cpu"``: the main thread's CPU time per block, and all of the delivery thread's CPU
    time charged to the watched side; ``"wall"``: wall time per block, and the delivery
    thread's CPU time that fell in bare blocks moved to the watched side.
    """
    diff: list[float] = []  # per pair: watched - bare, the delivery thread moved to watched
    bare: list[float] = []
    excess: list[float] = []  # per pair: its bare block over its neighbours' (odd pairs)
    strata: list[tuple[bool, bool]] = []  # (the watched block evaluated, bare after watched)
    fixed = 0.0
    for run in runs:
        if clock == "cpu":
            b, w = run["bare_cpu"], run["watched_cpu"]
            fixed += run["background_seconds"]
        else:
            bg = run["background_in_bare"]
            b = [t - g for t, g in zip(run["bare_blocks"], bg, strict=True)]
            w = [t + g for t, g in zip(run["watched_blocks"], bg, strict=True)]
        fixed += run["setup_seconds"] + run["close_seconds"]
        for k in range(len(b)):
            after = k % 2 == 1
            neighbours = [b[j] for j in (k - 1, k + 1) if after and 0 <= j < len(b)]
            diff.append(w[k] - b[k])
            bare.append(b[k])
            excess.append(b[k] - statistics.fmean(neighbours) if neighbours else 0.0)
            strata.append((run["evaluations_in_block"][k] > 0, after and bool(neighbours)))

    def estimate(index: Sequence[int]) -> tuple[float, float, float]:
        hit = [excess[i] for i in index if strata[i] == (True, True)]
        miss = [excess[i] for i in index if strata[i] == (False, True)]
        spill = statistics.fmean(hit) - statistics.fmean(miss) if hit and miss else 0.0
        charge = max(spill, 0.0) * len(hit)
        total_bare = sum(bare[i] for i in index)
        return (sum(diff[i] for i in index) + fixed + charge) / total_bare, spill, charge

    everything = list(range(len(diff)))
    overhead, spill, charge = estimate(everything)
    groups: dict[tuple[bool, bool], list[int]] = {}
    for i, key in enumerate(strata):
        groups.setdefault(key, []).append(i)
    rng = random.Random(seed)
    boot = []
    for _ in range(draws):
        index = [i for members in groups.values() for i in rng.choices(members, k=len(members))]
        boot.append(estimate(index))
    ratios = sorted(r for r, _, _ in boot)
    spills = sorted(s for _, s, _ in boot)
    quiet = [diff[i] / bare[i] for i in everything if not strata[i][0]]
    return {
        "overhead": overhead,
        "ci95": [ratios[int(0.025 * draws)], ratios[int(0.975 * draws) - 1]],
        "pairs": len(diff),
        "spill_over_ms": 1000 * spill,
        "spill_over_ci95_ms": [
            1000 * spills[int(0.025 * draws)],
            1000 * spills[int(0.975 * draws) - 1],
        ],
        "spill_over_charged_seconds": charge,
        "bare_after_evaluation_blocks": len(groups.get((True, True), [])),
        "fixed_seconds": fixed,
        "background_in_bare_seconds": sum(sum(r["background_in_bare"]) for r in runs),
        "pair_noise": statistics.pstdev(quiet) if len(quiet) > 1 else 0.0,
    }


def _median(runs: Sequence[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def summarize(
    name: str, steps: int, runs: list[dict[str, Any]], aa: list[dict[str, Any]]
) -> dict[str, Any]:
    """The ``models`` entry of one model from its interleaved runs (and A/A controls)."""
    pooled = block_overhead(runs)
    wall = block_overhead(runs, clock="wall")
    step_seconds = _median(runs, "train_step_bare")
    bare_cpu = sum(sum(r["bare_cpu"]) for r in runs)
    entry: dict[str, Any] = {
        "steps": steps,
        "train_step_ms": 1000 * step_seconds,
        "default_overhead": pooled["overhead"],
        "overhead_ci95": pooled["ci95"],
        "overhead_each_run": [block_overhead([r], draws=1)["overhead"] for r in runs],
        "wall_overhead": wall["overhead"],
        "wall_overhead_ci95": wall["ci95"],
        "wall_overhead_each_run": [
            block_overhead([r], clock="wall", draws=1)["overhead"] for r in runs
        ],
        "cpu_share_of_wall": bare_cpu / sum(sum(r["bare_blocks"]) for r in runs),
        "repeats": len(runs),
        "block_pairs": pooled["pairs"],
        "pair_noise": pooled["pair_noise"],
        "wall_pair_noise": wall["pair_noise"],
        "spill_over_ms_per_evaluation": pooled["spill_over_ms"],
        "spill_over_ci95_ms": pooled["spill_over_ci95_ms"],
        "spill_over_charged_seconds": pooled["spill_over_charged_seconds"],
        "bare_after_evaluation_blocks": pooled["bare_after_evaluation_blocks"],
        "background_in_bare_seconds": wall["background_in_bare_seconds"],
        "weights_equal": all(r["weights_equal"] for r in runs + aa),
    }
    if aa:
        control, control_wall = block_overhead(aa), block_overhead(aa, clock="wall")
        entry |= {
            "aa_overhead": control["overhead"],
            "aa_ci95": control["ci95"],
            "aa_wall_overhead": control_wall["overhead"],
            "aa_wall_ci95": control_wall["ci95"],
            "aa_repeats": len(aa),
        }
    probe_names = list(runs[0]["probe_runs"])
    entry |= {
        "agent_share": _median(runs, "agent_share"),
        "agent_call_share": _median(runs, "agent_call_share"),
        "train_step_slowdown": _median(runs, "train_step_watched") / step_seconds - 1,
        "faults_per_step_bare": _median(runs, "faults_per_step_bare"),
        "faults_per_step_watched": _median(runs, "faults_per_step_watched"),
        "evaluations": _median(runs, "evaluations"),
        "evaluations_each_run": [r["evaluations"] for r in runs],
        "evaluated_steps": runs[0]["evaluated_steps"],
        "probe_runs": {
            p: statistics.median(r["probe_runs"].get(p, 0) for r in runs) for p in probe_names
        },
        "core_probes": runs[-1]["core_probes"],
        "core_evaluation_steps": _median(runs, "core_ms")
        / (1000 * _median(runs, "train_step_watched")),
        "evaluation_own_ms": _median(runs, "evaluation_own_ms"),
        "bookkeeping_us_per_call": _median(runs, "call_us"),
        "skipped_evaluations": _median(runs, "skipped_evaluations"),
        "one_off_seconds": _median(runs, "one_off_seconds"),
        "background_seconds": _median(runs, "background_seconds"),
        "setup_seconds": _median(runs, "setup_seconds"),
        "close_seconds": _median(runs, "close_seconds"),
        "agent_errors": max(r["agent_errors"] for r in runs),
    }
    return entry


def _pct(x: float) -> str:
    return f"{100 * x:+.2f} %"


def _ci(pair: Sequence[float]) -> str:
    return f"[{100 * pair[0]:+.2f}, {100 * pair[1]:+.2f}]" if pair else "[]"


def _line(name: str, e: dict[str, Any]) -> str:
    """One model's results in a line of text."""
    return (
        f"{name:<12} {e['steps']} steps of {e['train_step_ms']:.2f} ms, {e['block_pairs']} "
        f"block pairs: {_pct(e['default_overhead'])} {_ci(e['overhead_ci95'])} (CPU clock), "
        f"{_pct(e['wall_overhead'])} {_ci(e['wall_overhead_ci95'])} (wall clock); A/A "
        f"{_pct(e.get('aa_overhead', float('nan')))} {_ci(e.get('aa_ci95', []))}, wall "
        f"{_pct(e.get('aa_wall_overhead', float('nan')))} {_ci(e.get('aa_wall_ci95', []))}; "
        f"spill-over {e['spill_over_ms_per_evaluation']:+.2f} ms an evaluation; agent's own "
        f"share {100 * e['agent_share']:.2f} %, calls seen from the loop "
        f"{100 * e['agent_call_share']:.2f} %, training steps {_pct(e['train_step_slowdown'])}; "
        f"{e['evaluations']:.0f} evaluations ({e['skipped_evaluations']:.0f} grid steps "
        f"skipped); weights equal: {e['weights_equal']}"
    )


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per model")
    parser.add_argument("--aa-repeats", type=int, default=1, help="A/A control runs per model")
    parser.add_argument("--block", type=int, default=BLOCK, help="steps per block")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every model's steps")
    parser.add_argument("--every", type=int, nargs="*", default=[100, 500], help="MLP cadences")
    parser.add_argument(
        "--malloc", choices=("fixed", "default"), default="fixed", help="see fix_malloc"
    )
    parser.add_argument("--json", type=Path, default=None, help="updated with the models run")
    args = parser.parse_args()
    malloc_fixed = args.malloc == "fixed" and fix_malloc()
    torch.set_num_threads(1)
    started = time.perf_counter()
    result: dict[str, Any] = {}
    if args.json is not None and args.json.exists():
        result = json.loads(args.json.read_text())
        if result.get("method") != "interleaved blocks":
            result = {}  # results of the earlier (whole-run) method are not merged
    result |= {
        "method": "interleaved blocks",
        "goal": "default_overhead (watched / bare wall time - 1, interleaved blocks) <= 0.01",
        "block_steps": args.block,
        "threads": 1,
        "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "malloc_thresholds_fixed": malloc_fixed,
    }
    result.setdefault("models", {})
    result.setdefault("repeats", {})
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            model_started = time.perf_counter()
            steps = max(50, int(MODELS[name][2] * args.scale))
            interleaved(name, 2 * args.block, agent_kwargs={}, db=Path(tmp) / "warm.db")
            runs: list[dict[str, Any]] = []
            aa: list[dict[str, Any]] = []
            kinds = [
                kind
                for i in range(max(args.repeats, args.aa_repeats))
                for kind, n in (("watched", args.repeats), ("A/A", args.aa_repeats))
                if i < n
            ]
            for i, kind in enumerate(kinds):
                control = kind == "A/A"
                db = Path(tmp) / f"{name}-{i}.db"
                run = interleaved(
                    name,
                    steps,
                    agent_kwargs=None if control else {},
                    db=db,
                    block=args.block,
                    swap=len(aa if control else runs) % 2 == 1,
                )
                (aa if control else runs).append(run)
                elapsed = time.perf_counter() - started
                print(f"{name} run {i + 1} ({kind}) done at {elapsed:.0f} s", flush=True)
            entry = summarize(name, steps, runs, aa)
            entry["seconds"] = time.perf_counter() - model_started
            entry["cpus"] = result["cpus"]
            result["models"][name] = entry
            result["repeats"][name] = len(runs)
            print(_line(name, entry), flush=True)
            if name != "mlp" or not args.every:
                continue
            # the reference MLP at fixed cadences without a cap, and each probe's cost
            result["cadences"] = {}
            step_seconds = entry["train_step_ms"] / 1000
            for every in args.every:
                db = Path(tmp) / f"mlp-every-{every}.db"
                run = interleaved(
                    name, steps, agent_kwargs={"every": every}, db=db, block=args.block
                )
                measured = block_overhead([run])
                wall = block_overhead([run], clock="wall")
                result["cadences"][str(every)] = {
                    "ratio": 1 + measured["overhead"],
                    "ratio_ci95": [1 + x for x in measured["ci95"]],
                    "wall_ratio": 1 + wall["overhead"],
                    "wall_ratio_ci95": [1 + x for x in wall["ci95"]],
                    "evaluations": run["evaluations"],
                }
                print(
                    f"mlp every {every:>4} (no cap): {_pct(measured['overhead'])} (CPU clock), "
                    f"{_pct(wall['overhead'])} (wall clock)",
                    flush=True,
                )
                if every == args.every[0]:
                    result["evaluations_at_first_cadence"] = run["evaluations"]
                    result["probe_cost_in_train_steps"] = {
                        k: v / run["evaluations"] / step_seconds
                        for k, v in run["probe_seconds"].items()
                    }
            result |= {"steps": steps, "train_step_ms": entry["train_step_ms"]}
    result["seconds"] = time.perf_counter() - started
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
