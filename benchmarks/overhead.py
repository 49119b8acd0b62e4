"""Agent overhead on an MLP, a transformer and an LSTM, side by side in one process.

Each model trains full batch (AdamW) on (a + b) mod 53 with half the pairs, for a fixed number
of steps, without and with a ``grokwatch.Agent`` attached (every built-in probe, SQLite store in
a temporary directory), alternating ``--repeats`` times so machine noise hits both alike. One
torch thread, as in a sweep worker.

- ``mlp``: the reference run (seed-000 MLP, factorized first layer, ``trainer.train``);
- ``transformer``: one pre-LN block (4 heads, GELU MLP applied functionally), tokens
  ``[a, b, =]``, logits at every position ``(N, 3, p)`` (read at the last by the agent);
- ``lstm``: embedding -> LSTM(64) -> last state -> Linear.

At the defaults (``Agent(model, train=..., test=..., budget=steps)``: the agent picks the steps
under its 1 % cap) each watched run reports:

- ``default_overhead``: the agent's share of the training loop's wall time, as the agent
  measures it and as the cap bounds it: seconds inside ``agent.step`` over the loop's seconds
  (median over repeats);
- ``wall_overhead`` / ``cpu_overhead``: the watched run's wall / process CPU time over the bare
  run's, minus 1 (median over the interleaved pairs), including set-up and ``close``; on a
  shared machine these carry a few percent of noise either way;
- the evaluations run and skipped, set-up and close seconds.

For the MLP the fixed cadences of ``--every`` (no cap) are also run, with each probe's cost per
evaluation in training steps (``probe_cost_in_train_steps``, at the first cadence).

    python benchmarks/overhead.py [--repeats 3] [--every 100 500] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
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
    "transformer": (Decoder, 1e-3, 1000),
    "lstm": (LSTMClassifier, 3e-3, 1000),
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
    start, cpu_start = time.perf_counter(), time.process_time()
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
    setup = time.perf_counter() - start
    for step in range(steps):
        loss = F.cross_entropy(_last(model(data.train_x)), data.train_y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if agent is not None:
            agent.step(step, loss=loss.detach())
    out: dict[str, Any] = {"setup_seconds": setup}
    if agent is not None:
        out["agent_share"] = agent.overhead_ratio
        closing = time.perf_counter()
        agent.close()
        out["close_seconds"] = time.perf_counter() - closing
        summary = agent.summary()
        out["evaluations"] = agent.evaluations
        out["skipped_evaluations"] = summary["skipped_evaluations"]
        out["agent_errors"] = agent.errors
        out["probe_seconds"] = dict(agent.probe_seconds)
    out["wall"] = time.perf_counter() - start
    out["cpu"] = time.process_time() - cpu_start
    return out


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every model's steps")
    parser.add_argument("--every", type=int, nargs="*", default=[100, 500], help="MLP cadences")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = {name: max(50, int(s * args.scale)) for name, (_, _, s) in MODELS.items()}
    variants: dict[str, dict[str, dict[str, Any] | None]] = {
        name: {"bare": None, "default": {}} for name in MODELS
    }
    for every in args.every:
        variants["mlp"][f"every_{every}"] = {"every": every}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {v: [] for v in vs} for name, vs in variants.items()
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            one_run(name, 20, agent_kwargs={}, db=Path(tmp) / "warm.db")  # warm-up
        for i in range(args.repeats):
            for name, vs in variants.items():
                for variant, kwargs in vs.items():
                    db = Path(tmp) / f"{name}-{variant}-{i}.db"
                    runs[name][variant].append(
                        one_run(name, steps[name], agent_kwargs=kwargs, db=db)
                    )

    def ratio(name: str, variant: str, key: str) -> float:
        pairs = zip(runs[name][variant], runs[name]["bare"], strict=True)
        return statistics.median(w[key] / b[key] - 1 for w, b in pairs)

    result: dict[str, Any] = {"repeats": args.repeats, "threads": 1, "models": {}}
    print(f"agent overhead, {args.repeats} interleaved repeats, 1 thread (median over repeats)")
    for name in MODELS:
        watched = runs[name]["default"]
        entry = {
            "steps": steps[name],
            "train_step_ms": 1000
            * statistics.median(r["wall"] for r in runs[name]["bare"])
            / steps[name],
            "default_overhead": statistics.median(r["agent_share"] for r in watched),
            "wall_overhead": ratio(name, "default", "wall"),
            "cpu_overhead": ratio(name, "default", "cpu"),
            "evaluations": statistics.median(r["evaluations"] for r in watched),
            "skipped_evaluations": statistics.median(r["skipped_evaluations"] for r in watched),
            "setup_seconds": statistics.median(r["setup_seconds"] for r in watched),
            "close_seconds": statistics.median(r["close_seconds"] for r in watched),
            "agent_errors": max(r["agent_errors"] for r in watched),
            "bare_wall": [r["wall"] for r in runs[name]["bare"]],
            "default_wall": [r["wall"] for r in watched],
        }
        result["models"][name] = entry
        print(
            f"{name:<12} {steps[name]} steps of {entry['train_step_ms']:.2f} ms: agent share "
            f"{100 * entry['default_overhead']:.2f} % ({entry['evaluations']:.0f} evaluations, "
            f"{entry['skipped_evaluations']:.0f} skipped); watched/bare - 1: wall "
            f"{100 * entry['wall_overhead']:+.2f} %, CPU {100 * entry['cpu_overhead']:+.2f} % "
            f"(set-up {entry['setup_seconds']:.2f} s, close {entry['close_seconds']:.2f} s)"
        )
    # the reference MLP at fixed cadences without a cap, and each probe's cost
    mlp_steps = steps["mlp"]
    step_seconds = statistics.median(r["cpu"] for r in runs["mlp"]["bare"]) / mlp_steps
    result.update({"steps": mlp_steps, "train_step_ms": 1000 * step_seconds, "cadences": {}})
    for every in args.every:
        variant = f"every_{every}"
        result["cadences"][str(every)] = {
            "times": [(r["wall"], r["cpu"]) for r in runs["mlp"][variant]],
            "wall_ratio_median": 1 + ratio("mlp", variant, "wall"),
            "cpu_ratio_median": 1 + ratio("mlp", variant, "cpu"),
        }
        print(
            f"mlp every {every:>4} (no cap): wall {100 * ratio('mlp', variant, 'wall'):+.2f} %, "
            f"CPU {100 * ratio('mlp', variant, 'cpu'):+.2f} %"
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
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
