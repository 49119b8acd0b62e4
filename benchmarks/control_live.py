"""Run control trained live through the Optuna integration: a small sweep, three studies.

Eight configurations of modular addition (p = 31, embedding MLP, full batch AdamW; RESEARCH §3
recipe) with different weight decays and train fractions are trained three times each, with
the same seeds, as trials of a real Optuna study:

- ``reference``: no pruner, trained to twice the budget -- it gives each run's ``t_grok``
  (also after the budget); charged the budget only, it is the fixed-budget method;
- ``median_pruner``: ``MedianPruner(n_startup_trials=2)`` on the test accuracy;
- ``grokwatch``: ``GrokwatchPruner(MedianPruner(n_startup_trials=2))`` with the agent's default
  ``RunPolicy`` (hopeless trials pruned, trials forecast to grok protected from the median
  pruner, finished runs stopped, runs about to grok extended through ``LoopBudget``).

Every trial trains through :class:`grokwatch.Agent` (every 100 steps, all probes) and
:func:`grokwatch.integrations.optuna.report`. Results go to
``benchmarks/results/control/live.json``.

    python -m benchmarks.control_live            # ~20 min of CPU (one thread)

Status: written and started this session, not run to completion (the shared machine was
loaded ~10x past its two cores); no ``live.json`` is committed yet.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import grokwatch
from grokwatch.integrations import LoopBudget
from grokwatch.integrations.optuna import GrokwatchPruner, report

P, BUDGET, EVERY = 31, 6000, 100
CONFIGS = [  # (weight decay, train fraction)
    (1.0, 0.5),
    (1.0, 0.4),
    (1.0, 0.3),
    (0.3, 0.5),
    (0.3, 0.3),
    (0.1, 0.5),
    (0.0, 0.5),
    (1.0, 0.2),
]
OUT = Path("benchmarks/results/control/live.json")


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(P, 64)
        self.hidden = nn.Linear(128, 128)
        self.out = nn.Linear(128, P)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embedding(x).flatten(1)  # (N, 2 * 64)
        return self.out(torch.relu(self.hidden(e)))


def data(frac: float, seed: int) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(seed)
    a, b = torch.meshgrid(torch.arange(P), torch.arange(P), indexing="ij")
    x = torch.stack([a.ravel(), b.ravel()], 1)
    y = (x[:, 0] + x[:, 1]) % P
    perm = torch.randperm(len(x), generator=g)
    n = int(frac * len(x))
    return (x[perm[:n]], y[perm[:n]]), (x[perm[n:]], y[perm[n:]])


def train(
    trial: Any, wd: float, frac: float, *, steps: int, policy: grokwatch.RunPolicy | None
) -> dict[str, Any]:
    """One run; reports to ``trial`` at every evaluation; returns what happened."""
    import optuna

    torch.manual_seed(trial.number)
    (x, y), (xt, yt) = data(frac, seed=trial.number)
    model = Net()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.98), weight_decay=wd)
    agent = grokwatch.Agent(
        model,
        train=(x, y),
        test=(xt, yt),
        every=EVERY,
        budget=BUDGET,
        modulus=P,
        db=None,
        policy=policy,
    )
    budget = LoopBudget(steps)
    t_grok, last, outcome, acc = None, 0, "ran", 0.0
    try:
        for step in budget:
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            decision = agent.step(step, loss=loss)
            if policy is not None:
                budget.follow(decision)
            last = step + 1
            if decision.step == step:
                acc = float(agent.history[-1][1].get("test_accuracy", 0.0))
                if t_grok is None and acc >= 0.9:
                    t_grok = step
                trial.report(acc, step)
                report(trial, decision)
                if trial.should_prune():
                    outcome = "pruned"
                    raise optuna.TrialPruned()
        if budget.stopped is not None:
            outcome = f"stopped ({budget.stopped.reason.value})"
        elif budget.extended:
            outcome = f"extended by {budget.extended}"
    finally:
        agent.close()
        trial.set_user_attr("run", {"steps": last, "t_grok": t_grok, "outcome": outcome})
    return {"steps": last, "t_grok": t_grok, "accuracy": acc}


def study(name: str, pruner: Any, policy: grokwatch.RunPolicy | None, steps: int) -> list[dict]:
    import optuna

    s = optuna.create_study(direction="maximize", pruner=pruner, study_name=name)

    def objective(trial: optuna.Trial) -> float:
        wd, frac = CONFIGS[trial.number]
        trial.set_user_attr("config", {"wd": wd, "frac": frac})
        return float(train(trial, wd, frac, steps=steps, policy=policy)["accuracy"])

    s.optimize(objective, n_trials=len(CONFIGS))
    return [
        {"config": t.user_attrs["config"], **t.user_attrs["run"], "state": t.state.name}
        for t in s.trials
    ]


def main() -> None:
    import optuna

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    runs = {
        "reference": study("reference", optuna.pruners.NopPruner(), None, 2 * BUDGET),
        "median_pruner": study(
            "median", optuna.pruners.MedianPruner(n_startup_trials=2), None, BUDGET
        ),
        "grokwatch": study(
            "grokwatch",
            GrokwatchPruner(optuna.pruners.MedianPruner(n_startup_trials=2)),
            grokwatch.RunPolicy(),
            BUDGET,
        ),
    }
    truth = [r["t_grok"] for r in runs["reference"]]
    methods = {}
    for name, rs in runs.items():
        steps = [min(r["steps"], BUDGET) if name == "reference" else r["steps"] for r in rs]
        in_budget = [i for i, t in enumerate(truth) if t is not None and t <= BUDGET]
        late = [i for i, t in enumerate(truth) if t is not None and t > BUDGET]
        lost = [i for i in in_budget if rs[i]["steps"] <= (truth[i] or 0)]
        rescued = [i for i in late if rs[i]["steps"] > (truth[i] or 0)]
        methods[name if name != "reference" else "fixed"] = {
            "compute_fraction": sum(steps) / (BUDGET * len(CONFIGS)),
            "grokkers": len(in_budget),
            "grokkers_lost_count": len(lost),
            "grokkers_lost": len(lost) / max(len(in_budget), 1),
            "past_budget_grokkers": len(late),
            "rescued": len(rescued),
            "rescued_fraction": len(rescued) / max(len(late), 1),
            "runs": rs,
        }
        m = methods[name if name != "reference" else "fixed"]
        print(
            f"{name:>14}: compute {m['compute_fraction']:.3f}, lost {len(lost)}/{len(in_budget)},"
            f" rescued {len(rescued)}/{len(late)}",
            flush=True,
        )
    out = {
        "methods": methods,
        "setup": {
            "task": f"x + y mod {P}, embedding MLP, full batch AdamW lr 3e-3",
            "configs": CONFIGS,
            "budget": BUDGET,
            "every": EVERY,
            "reference_steps": 2 * BUDGET,
            "seconds": round(time.perf_counter() - t0, 1),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out} in {out['setup']['seconds']} s")


if __name__ == "__main__":
    main()
