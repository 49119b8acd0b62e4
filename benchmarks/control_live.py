"""Run control trained live through the Optuna and Lightning integrations, side by side.

A small sweep of modular addition (p = 31, embedding MLP, full batch AdamW lr 3e-3; the
RESEARCH §3 recipe) with different weight decays and train fractions. Every configuration is
trained, from the same seed, once per method, through the real libraries:

Optuna (a real study per method, one trial per configuration, test accuracy reported every
``EVERY`` steps; every trial trains through :class:`grokwatch.Agent`, all probes):

- ``optuna_fixed``: no pruner, trained to ``2 * budget`` -- the reference that gives each run's
  ``t_grok`` (also after the budget); charged the budget only, it is the fixed-budget method;
- ``optuna_median``: ``MedianPruner(n_startup_trials=2)``;
- ``optuna_grokwatch``: ``GrokwatchPruner(MedianPruner(n_startup_trials=2))`` with the default
  :class:`grokwatch.RunPolicy` (hopeless trials pruned, trials forecast to grok protected from
  the median pruner, finished runs stopped, runs about to grok extended through ``LoopBudget``).

Lightning (a real ``lightning.pytorch.Trainer`` per run, the full batch repeated, validation on
the test split every ``EVERY`` steps):

- ``lightning_fixed``: ``max_steps=2 * budget``, the reference (charged the budget only);
- ``lightning_early_stopping``: ``EarlyStopping(monitor="val_loss", patience=10)``;
- ``lightning_grokwatch``: :class:`grokwatch.integrations.lightning.GrokwatchCallback` over an
  agent with the default ``RunPolicy``.

Each method is scored against its own library's reference runs: compute as a share of the
fixed budget, grokkers (``t_grok <= budget``) stopped before ``t_grok``, past-budget grokkers
(``budget < t_grok <= 2 * budget``) trained past ``t_grok``, steps on runs that never reach 90 %
test accuracy by ``2 * budget``, wall time. The three groups of runs (Optuna; Lightning
reference; Lightning early stopping and grokwatch) train in three spawned processes at once,
one torch thread each. Results: ``benchmarks/results/control/live.json``; the docs table is
``python benchmarks/doc_tables.py control_live``.

    python -m benchmarks.control_live                       # the committed run
    python -m benchmarks.control_live --configs 2 --budget 400 --out /tmp/live.json  # smoke
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import nn

P, BUDGET, EVERY, GROKKED = 31, 3000, 100, 0.9
CONFIGS = [  # (weight decay, train fraction); seed = index
    (1.0, 0.7),
    (1.0, 0.6),
    (1.0, 0.55),
    (0.3, 0.6),
    (0.0, 0.5),
    (1.0, 0.3),
]
OUT = Path("benchmarks/results/control/live.json")
LIB = {"optuna": "optuna_fixed", "lightning": "lightning_fixed"}


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


def _watch(model: nn.Module, train: Any, test: Any, budget: int, policy: Any) -> Any:
    """The agent each watched side attaches: no store, the benchmark's cadence."""
    import grokwatch

    return grokwatch.Agent(
        model, train=train, test=test, every=EVERY, budget=budget, modulus=P, db=None,
        policy=policy,
    )  # fmt: skip


def _optimizer(model: nn.Module, wd: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.98), weight_decay=wd)


# --- Optuna ------------------------------------------------------------------------------------


def _optuna_trial(
    trial: Any, wd: float, frac: float, budget: int, steps: int, policy: bool
) -> float:
    import optuna

    import grokwatch
    from grokwatch.integrations import LoopBudget
    from grokwatch.integrations.optuna import report

    seed = trial.number
    torch.manual_seed(seed)
    (x, y), (xt, yt) = data(frac, seed=seed)
    model = Net()
    opt = _optimizer(model, wd)
    agent = _watch(model, (x, y), (xt, yt), budget, grokwatch.RunPolicy() if policy else None)
    loop = LoopBudget(steps)
    t_grok, last, outcome, acc = None, 0, "ran", 0.0
    try:
        for step in loop:
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            decision = agent.step(step, loss=loss)
            if policy:
                loop.follow(decision)
            last = step + 1
            if decision.step == step:
                acc = float(agent.history[-1][1].get("test_accuracy", 0.0))
                if t_grok is None and acc >= GROKKED:
                    t_grok = step
                trial.report(acc, step)
                report(trial, decision)
                if trial.should_prune():
                    outcome = "pruned"
                    raise optuna.TrialPruned()
        if loop.stopped is not None:
            outcome = f"stopped ({loop.stopped.reason.value})"
        elif loop.extended:
            outcome = f"extended by {loop.extended}"
    finally:
        agent.close()
        trial.set_user_attr("run", {"steps": last, "t_grok": t_grok, "outcome": outcome})
    return acc


def optuna_side(configs: list[tuple[float, float]], budget: int) -> dict[str, Any]:
    import optuna

    from grokwatch.integrations.optuna import GrokwatchPruner

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = {
        "optuna_fixed": (optuna.pruners.NopPruner(), 2 * budget, False),
        "optuna_median": (optuna.pruners.MedianPruner(n_startup_trials=2), budget, False),
        "optuna_grokwatch": (
            GrokwatchPruner(optuna.pruners.MedianPruner(n_startup_trials=2)),
            budget,
            True,
        ),
    }
    out = {}
    for name, (pruner, steps, policy) in studies.items():
        t0 = time.perf_counter()
        study = optuna.create_study(direction="maximize", pruner=pruner, study_name=name)

        def objective(trial: optuna.Trial, steps: int = steps, policy: bool = policy) -> float:
            wd, frac = configs[trial.number]
            trial.set_user_attr("config", {"wd": wd, "frac": frac})
            return _optuna_trial(trial, wd, frac, budget, steps, policy)

        study.optimize(objective, n_trials=len(configs))
        runs = [
            {"config": t.user_attrs["config"], **t.user_attrs["run"], "state": t.state.name}
            for t in study.trials
        ]
        out[name] = {"runs": runs, "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{name}: {out[name]['seconds']} s", flush=True)
    return out


# --- Lightning ---------------------------------------------------------------------------------


class _Repeat(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    """The full batch, forever (one Lightning epoch of unbounded length)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield self.x, self.y


def _lightning_run(method: str, index: int, wd: float, frac: float, budget: int) -> dict[str, Any]:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping

    import grokwatch
    from grokwatch.integrations.lightning import GrokwatchCallback

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = Net()
            self.t_grok: int | None = None
            self.accuracy = 0.0

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            logits = self.net(x)
            self.log("val_loss", nn.functional.cross_entropy(logits, y))
            self.accuracy = float((logits.argmax(1) == y).float().mean())
            if self.t_grok is None and self.accuracy >= GROKKED:
                self.t_grok = int(self.trainer.global_step)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return _optimizer(self.net, wd)

    torch.manual_seed(index)
    (x, y), (xt, yt) = data(frac, seed=index)
    module = Module()
    callbacks: list[Any] = []
    callback = None
    if method == "lightning_early_stopping":
        callbacks.append(EarlyStopping(monitor="val_loss", patience=10))
    if method == "lightning_grokwatch":
        agent = _watch(module.net, (x, y), (xt, yt), budget, grokwatch.RunPolicy())
        callback = GrokwatchCallback(agent)
        callbacks.append(callback)
    loader = torch.utils.data.DataLoader(_Repeat(x, y), batch_size=None)
    val = torch.utils.data.DataLoader([(xt, yt)], batch_size=None)
    trainer = pl.Trainer(
        max_steps=2 * budget if method == "lightning_fixed" else budget,
        val_check_interval=EVERY,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(module, loader, val)
    outcome = "ran"
    if callback is not None and callback.budget is not None:
        if callback.budget.stopped is not None:
            outcome = f"stopped ({callback.budget.stopped.reason.value})"
        elif callback.budget.extended:
            outcome = f"extended by {callback.budget.extended}"
    elif method == "lightning_early_stopping" and trainer.global_step < budget:
        outcome = "stopped (early stopping)"
    return {
        "config": {"wd": wd, "frac": frac},
        "steps": int(trainer.global_step),
        "t_grok": module.t_grok,
        "outcome": outcome,
    }


def lightning_side(methods: list[str], configs: list[tuple[float, float]], budget: int) -> dict:
    import logging
    import warnings

    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    out = {}
    for method in methods:
        t0 = time.perf_counter()
        runs = [_lightning_run(method, i, wd, frac, budget) for i, (wd, frac) in enumerate(configs)]
        out[method] = {"runs": runs, "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{method}: {out[method]['seconds']} s", flush=True)
    return out


# --- scoring -----------------------------------------------------------------------------------


def score(name: str, entry: dict[str, Any], truth: list[int | None], budget: int) -> dict:
    """A method's numbers against its library's reference ``truth`` (``t_grok`` per config)."""
    rs = entry["runs"]
    fixed = name in LIB.values()
    steps = [min(r["steps"], budget) if fixed else r["steps"] for r in rs]
    in_budget = [i for i, t in enumerate(truth) if t is not None and t <= budget]
    late = [i for i, t in enumerate(truth) if t is not None and t > budget]
    never = [i for i, t in enumerate(truth) if t is None]
    lost = [i for i in in_budget if steps[i] <= (truth[i] or 0)]
    rescued = [i for i in late if steps[i] > (truth[i] or 0)]
    return {
        "compute_fraction": sum(steps) / (budget * len(rs)),
        "grokkers": len(in_budget),
        "grokkers_lost_count": len(lost),
        "grokkers_lost": len(lost) / max(len(in_budget), 1),
        "past_budget_grokkers": len(late),
        "rescued": len(rescued),
        "rescued_fraction": len(rescued) / len(late) if late else None,
        "never_generalizing": len(never),
        "steps_on_never_generalizing": sum(steps[i] for i in never),
        "seconds": entry["seconds"],
        "runs": rs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--configs", type=int, default=len(CONFIGS), help="the first N configs")
    ap.add_argument("--budget", type=int, default=BUDGET)
    args = ap.parse_args()
    configs, budget = CONFIGS[: args.configs], args.budget
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")  # no fork (CUDA-safe)
    with ProcessPoolExecutor(max_workers=3, mp_context=ctx) as pool:
        jobs = [
            pool.submit(optuna_side, configs, budget),
            pool.submit(lightning_side, ["lightning_fixed"], configs, budget),
            pool.submit(
                lightning_side, ["lightning_early_stopping", "lightning_grokwatch"], configs, budget
            ),
        ]
        raw: dict[str, Any] = {}
        for job in jobs:
            raw.update(job.result())
    methods = {}
    for lib, ref in LIB.items():
        truth = [r["t_grok"] for r in raw[ref]["runs"]]
        for name, entry in raw.items():
            if name.startswith(lib):
                methods[name] = m = score(name, entry, truth, budget)
                print(
                    f"{name:>26}: compute {m['compute_fraction']:.3f}, lost "
                    f"{m['grokkers_lost_count']}/{m['grokkers']}, rescued "
                    f"{m['rescued']}/{m['past_budget_grokkers']}, never-generalizing steps "
                    f"{m['steps_on_never_generalizing']}, {m['seconds']} s",
                    flush=True,
                )
    out = {
        "methods": methods,
        "setup": {
            "task": f"x + y mod {P}, embedding MLP, full batch AdamW lr 3e-3, seed = config index",
            "configs": configs,
            "budget": budget,
            "every": EVERY,
            "grokked_at_test_accuracy": GROKKED,
            "reference_steps": 2 * budget,
            "processes": 3,
            "torch_threads": 1,
            "load_average_before": round(load, 2),
            "load_average_after": round(os.getloadavg()[0], 2),
            "seconds": round(time.perf_counter() - t0, 1),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out} in {out['setup']['seconds']} s", flush=True)


if __name__ == "__main__":
    main()
