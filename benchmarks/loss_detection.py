"""Does the agent find the loss a run minimizes? The first steps of corpus v2's configurations.

For every ``--every``-th run of each corpus v2 family (sorted by run id), the run's model,
data, loss and optimizer are built as the trainer builds them (``trainer.families.build``),
and the first three steps are trained (mini-batches as the config asks) under a
:class:`grokwatch.Agent` at its defaults that is *not* told the loss (only the loss probe, the
default grid, nothing kept). The loop reports its loss as ``agent.step(step, loss=loss)``
after the optimizer step, as the docs show. Counted: runs whose loss the agent found (digits
runs are trained with MSE on one-hot targets or with cross-entropy; every other family with
cross-entropy), and the ratio of the reported loss to the loss measured on the same weights.

    nice -n 19 python -m benchmarks.loss_detection   # results/forecast/loss_detection.json
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path
from typing import Any

import torch

from grokwatch import Agent

OUT = Path("benchmarks/results/forecast/loss_detection.json")


def first_steps(run: Any, steps: int = 3) -> dict[str, Any]:
    from trainer.families import FAMILIES, build, draw_batch, minibatch_generator
    from trainer.optim import make_optimizer

    family = run.family
    cfg_cls = FAMILIES[family].config_cls
    cfg = cfg_cls.from_dict({k: v for k, v in run.config.items() if k != "family"})
    torch.manual_seed(cfg.seed)
    model, data, loss_fn = build(cfg)
    optimizer, grokfast = make_optimizer(model, cfg)
    gen = minibatch_generator(cfg)
    agent = Agent(
        model,
        train=(data.train_x, data.train_y),
        test=(data.test_x, data.test_y),
        budget=cfg.steps,
        transport=None,
        probes=["loss_accuracy"],
    )
    model.train()
    for step in range(1, steps + 1):
        optimizer.zero_grad(set_to_none=True)
        x, y = data.train_x, data.train_y
        if gen is not None:
            idx = draw_batch(len(y), cfg.batch_size, gen)  # (B,)
            x, y = x[idx], y[idx]
        loss = loss_fn(model(x), y).mean()
        loss.backward()
        if grokfast is not None:
            grokfast()
        optimizer.step()
        agent.step(step, loss=loss.detach())
    agent.close()
    want = "mse" if getattr(cfg, "loss", "ce") == "mse" else "cross_entropy"
    choice = agent.loss
    measured = choice.candidates.get(want)
    return {
        "run": run.run_id,
        "family": family,
        "trained_with": want,
        "found": choice.name,
        "source": choice.source.value,
        "batch_size": getattr(cfg, "batch_size", 0),
        "ratio": choice.reported / measured if measured and choice.reported else None,
        "errors": agent.errors,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, default=10, help="every N-th run of each family (10)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from trainer.corpus import load

    runs = sorted(
        load("trainer/data/corpus", split=("train", "eval", "heldout")), key=lambda r: r.run_id
    )
    by_family: dict[str, list[Any]] = collections.defaultdict(list)
    for r in runs:
        by_family[r.family].append(r)
    rows = [first_steps(r) for fam in sorted(by_family) for r in by_family[fam][:: args.every]]
    summary: dict[str, Any] = {}
    for key in sorted({(r["family"], r["trained_with"]) for r in rows}):
        mine = [r for r in rows if (r["family"], r["trained_with"]) == key]
        summary[f"{key[0]}/{key[1]}"] = {
            "runs": len(mine),
            "found": sum(r["found"] == r["trained_with"] for r in mine),
            "found_as": dict(collections.Counter(r["found"] for r in mine)),
            "mini_batch": sum(bool(r["batch_size"]) for r in mine),
        }
    summary["all"] = {
        "runs": len(rows),
        "found": sum(r["found"] == r["trained_with"] for r in rows),
        "agent_errors": sum(r["errors"] for r in rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "runs": rows}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
