"""grokwatch in Ray Tune: a ``Stopper`` that ends hopeless and finished trials.

Two trials of the run of ``plain_loop.py`` (with and without weight decay), each training with
the agent and its run policy and reporting the decision with ``report_fields``; Tune's
``GrokwatchStopper`` ends a trial the policy stops (hopeless, or finished once generalized) and
keeps each trial's step budget, which an extension would grow. Runs Ray locally on this
machine. Needs Ray Tune (``pip install -e ".[ray]"``).

    python examples/ray_tune.py [--steps 2000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any

import ray
import torch
import torch.nn.functional as F
from ray import tune

import grokwatch
from grokwatch.integrations.loop import LoopBudget
from grokwatch.integrations.ray import GrokwatchStopper, report_fields
from trainer.model import MLP
from trainer.tasks import make_dataset


def trainable(config: dict[str, Any]) -> None:
    torch.set_num_threads(1)
    data = make_dataset(31, "add", 0.5, data_seed=0)
    torch.manual_seed(0)
    model = MLP(31, d_emb=32, d_hidden=64)
    opt = torch.optim.AdamW(
        model.parameters(), lr=1e-2, weight_decay=config["weight_decay"], betas=(0.9, 0.98)
    )
    steps = config["steps"]
    agent = grokwatch.Agent(
        model,
        train=(data.train_x, data.train_y),
        test=(data.test_x, data.test_y),
        every=100,
        budget=steps,
        policy=grokwatch.RunPolicy(),
        transport=None,  # nothing kept on disk
    )
    budget = LoopBudget(steps)
    with agent:
        for step in budget:
            loss = F.cross_entropy(model(data.train_x), data.train_y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            decision = agent.step(step, loss=loss.detach())
            budget.follow(decision)
            if decision.step == step:  # an evaluation
                with torch.no_grad():
                    acc = float((model(data.test_x).argmax(-1) == data.test_y).float().mean())
                tune.report({"test_accuracy": acc, "step": step, **report_fields(decision, budget)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}},
    )
    try:
        with tempfile.TemporaryDirectory() as storage:
            tuner = tune.Tuner(
                trainable,
                param_space={"weight_decay": tune.grid_search([1.0, 0.0]), "steps": args.steps},
                run_config=tune.RunConfig(stop=GrokwatchStopper(), storage_path=storage, verbose=0),
            )
            results = tuner.fit()
            for r in sorted(results, key=lambda r: -r.config["weight_decay"]):
                m = r.metrics
                print(
                    f"weight decay {r.config['weight_decay']}: ended at step {m['step']}, "
                    f"{m['grokwatch_action']} ({m['grokwatch_reason']}), test accuracy "
                    f"{m['test_accuracy']:.2f}"
                )
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
