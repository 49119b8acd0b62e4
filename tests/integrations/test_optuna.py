"""The Optuna pruner in a real study: hopeless trials are pruned, trials forecast to grok are
never pruned, even when the wrapped MedianPruner would prune them."""

from __future__ import annotations

import pytest
import torch
from _task import (
    BUDGET,
    EXTEND,
    HOPELESS,
    LR,
    agent,
    data,
    mlp,
    one_thread,  # noqa: F401 (autouse fixture)
)

from grokwatch.integrations import LoopBudget

optuna = pytest.importorskip("optuna")
from grokwatch.integrations.optuna import ATTR, GrokwatchPruner, report  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def objective_for(p_by_trial: dict[int, float]):
    """Trial ``i`` forecasts the constant ``p_by_trial[i]``; its intermediate value is the
    test accuracy (random labels: flat), so MedianPruner judges trials by noise."""

    def objective(trial: optuna.Trial) -> float:
        p = p_by_trial[trial.number]
        model = mlp(seed=trial.number)
        watch = agent(model, p, HOPELESS if p < 0.5 else EXTEND, seed=0)
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        (x, y), (xt, yt) = data()
        budget = LoopBudget(BUDGET)
        accuracy = 0.0
        for step in budget:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            decision = watch.step(step, loss=loss)
            budget.follow(decision)
            if decision.step == step:
                with torch.no_grad():
                    accuracy = float((model(xt).argmax(1) == yt).float().mean())
                # trials forecast to grok look worse and worse (MedianPruner prunes them); the
                # hopeless one looks best (only grokwatch prunes it)
                value = accuracy + 1.0 if p < 0.5 else accuracy - 0.1 * trial.number
                trial.report(value, step)
                report(trial, decision)
                if trial.should_prune():
                    watch.close()
                    raise optuna.TrialPruned()
        watch.close()
        return accuracy

    return objective


def test_hopeless_trials_are_pruned_and_grokking_ones_protected() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    median = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    pruner = GrokwatchPruner(median)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    p_by_trial = {0: 0.9, 1: 0.9, 2: 0.0, 3: 0.9}
    study.optimize(objective_for(p_by_trial), n_trials=4)
    states = {t.number: t.state for t in study.trials}
    assert states[2] is optuna.trial.TrialState.PRUNED
    advice = study.trials[2].user_attrs[ATTR]
    assert (advice["action"], advice["reason"]) == ("stop", "hopeless")
    for n in (0, 1, 3):  # forecast to grok: never pruned, however low their values
        assert states[n] is optuna.trial.TrialState.COMPLETE
    assert pruner.protected > 0  # the median pruner wanted to prune them


def test_without_grokwatch_advice_the_wrapped_pruner_decides() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        pruner=GrokwatchPruner(optuna.pruners.MedianPruner(n_startup_trials=1)),
    )

    def objective(trial: optuna.Trial) -> float:
        for step in range(5):
            trial.report(-float(trial.number), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return -float(trial.number)

    study.optimize(objective, n_trials=3)
    assert study.trials[2].state is optuna.trial.TrialState.PRUNED
