"""grokwatch in Optuna: a pruner that prunes hopeless trials and never one forecast to grok.

Two trials of the run of ``plain_loop.py``, one with weight decay (it groks) and one without (it
memorizes and stays there). Each reports its test accuracy and the agent's decision at every
evaluation; ``GrokwatchPruner`` wraps Optuna's ``MedianPruner``, which alone would rank trials by
their current accuracy — flat at chance on a grokking run's plateau — and prune the grokker.
The pruner protects a trial the forecast says will grok and prunes one the run policy calls
hopeless. Needs ``optuna`` (``pip install -e ".[optuna]"``).

    python examples/optuna_pruner.py [--steps 2000]
"""

from __future__ import annotations

import argparse

import optuna
import torch
import torch.nn.functional as F

import grokwatch
from grokwatch.integrations.loop import LoopBudget
from grokwatch.integrations.optuna import GrokwatchPruner, report
from trainer.model import MLP
from trainer.tasks import make_dataset

DATA = make_dataset(31, "add", 0.5, data_seed=0)


def test_accuracy(model: torch.nn.Module) -> float:
    with torch.no_grad():
        return float((model(DATA.test_x).argmax(-1) == DATA.test_y).float().mean())


def objective(trial: optuna.Trial, steps: int) -> float:
    wd = trial.suggest_categorical("weight_decay", [1.0, 0.0])
    torch.manual_seed(0)
    model = MLP(31, d_emb=32, d_hidden=64)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=wd, betas=(0.9, 0.98))
    agent = grokwatch.Agent(
        model,
        train=(DATA.train_x, DATA.train_y),
        test=(DATA.test_x, DATA.test_y),
        every=100,
        budget=steps,
        policy=grokwatch.RunPolicy(),
        transport=None,  # nothing kept on disk
    )
    budget = LoopBudget(steps)
    with agent:
        for step in budget:
            loss = F.cross_entropy(model(DATA.train_x), DATA.train_y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            decision = agent.step(step, loss=loss.detach())
            budget.follow(decision)
            if decision.step == step:  # an evaluation: tell Optuna
                trial.report(test_accuracy(model), step)
                report(trial, decision)
                if trial.should_prune():
                    print(f"weight decay {wd}: pruned at step {step} ({decision.reason})")
                    raise optuna.TrialPruned()
    print(f"weight decay {wd}: {budget.outcome.split(':')[0]} ({agent.decision.reason})")
    return test_accuracy(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.GridSampler({"weight_decay": [1.0, 0.0]}),
        pruner=GrokwatchPruner(optuna.pruners.MedianPruner(n_startup_trials=1)),
    )
    study.optimize(lambda trial: objective(trial, args.steps), n_trials=2)
    for t in study.trials:
        print(f"trial {t.number}: weight decay {t.params['weight_decay']}, {t.state.name}")
    print(f"best test accuracy {study.best_value:.2f} with {study.best_params}")


if __name__ == "__main__":
    main()
