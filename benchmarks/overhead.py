"""Agent overhead on the reference run, side by side in one process.

The seed-000 run (p=53, add, frac 0.5, Embedding 128 -> 256 -> 53, factorized first layer,
full-batch AdamW) is trained for ``--steps`` steps without and with a ``grokwatch.Agent``
attached (every built-in probe, default cadence, SQLite store in a temp dir), alternating
``--repeats`` times so machine noise hits both alike. Reports the wall-time ratio and each
probe's cost as a fraction of one training step. One torch thread, as in a sweep worker.

    python benchmarks/overhead.py [--steps 3000] [--repeats 3] [--every 100] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from grokwatch import Agent
from trainer.config import RunConfig
from trainer.tasks import make_dataset
from trainer.train import build_model, build_optimizer


def one_run(config: RunConfig, *, every: int | None, db: Path) -> tuple[float, float, Agent | None]:
    """Train once; returns (wall seconds, process CPU seconds incl. agent threads, agent)."""
    torch.manual_seed(config.seed)
    data = make_dataset(config.p, config.op, config.frac, data_seed=config.data_seed)
    model = build_model(config)
    opt = build_optimizer(model, config)
    agent = None
    if every is not None:
        agent = Agent(
            model,
            train=(data.train_x, data.train_y),
            test=(data.test_x, data.test_y),
            every=every,
            transport=db,
            modulus=config.p,
        )
    start, cpu_start = time.perf_counter(), time.process_time()
    for step in range(1, config.steps + 1):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(data.train_x), data.train_y)
        loss.backward()
        opt.step()
        if agent is not None:
            agent.step(step, loss=loss.detach())
    if agent is not None:
        agent.close()
    return time.perf_counter() - start, time.process_time() - cpu_start, agent


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--every", type=int, nargs="+", default=[500], help="one or more cadences")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = RunConfig(p=53, op="add", frac=0.5, lr=3e-3, wd=1.0, steps=args.steps)
    one_run(RunConfig(steps=20), every=None, db=Path("unused"))  # warm-up
    bare: list[tuple[float, float]] = []
    watched: dict[int, list[tuple[float, float]]] = {e: [] for e in args.every}
    probe_cost: dict[str, float] = {}
    evaluations = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            wall, cpu, _ = one_run(config, every=None, db=Path(tmp) / "x.db")
            bare.append((wall, cpu))
            for every in args.every:
                wall, cpu, agent = one_run(config, every=every, db=Path(tmp) / f"r{i}-{every}.db")
                watched[every].append((wall, cpu))
                if agent is not None and every == args.every[0]:
                    probe_cost = {k: v / agent.evaluations for k, v in agent.probe_seconds.items()}
                    evaluations = agent.evaluations
    step_seconds = statistics.median(c for _, c in bare) / args.steps
    result: dict[str, Any] = {
        "steps": args.steps,
        "repeats": args.repeats,
        "bare": bare,
        "train_step_ms": 1000 * step_seconds,
        "cadences": {},
        "evaluations_at_first_cadence": evaluations,
        "probe_cost_in_train_steps": {k: v / step_seconds for k, v in probe_cost.items()},
    }
    print(
        f"reference run (p=53 add, factorized MLP): {args.steps} steps, 1 thread, "
        f"{args.repeats} interleaved repeats; times are wall / process CPU seconds"
    )
    print(f"one training step: {result['train_step_ms']:.2f} ms CPU")
    print(f"bare            : {' '.join(f'{w:.2f}/{c:.2f}' for w, c in bare)}")
    for every, times in watched.items():
        wall = statistics.median(w / b[0] for (w, _), b in zip(times, bare, strict=True))
        cpu = statistics.median(c / b[1] for (_, c), b in zip(times, bare, strict=True))
        result["cadences"][every] = {
            "times": times,
            "wall_ratio_median": wall,
            "cpu_ratio_median": cpu,
        }
        print(
            f"every {every:>5} steps: {' '.join(f'{w:.2f}/{c:.2f}' for w, c in times)}  "
            f"overhead wall {100 * (wall - 1):+.2f} %, CPU {100 * (cpu - 1):+.2f} %"
        )
    total = sum(result["probe_cost_in_train_steps"].values())
    print(
        f"per-probe cost per evaluation at every={args.every[0]} (periodic and snapshot probes "
        f"amortized), in training steps; total {total:.2f}:"
    )
    for name, cost in sorted(result["probe_cost_in_train_steps"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:<22} {cost:6.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
