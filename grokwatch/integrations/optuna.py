"""Optuna: a pruner that prunes hopeless trials and never a trial forecast to grok.

.. code-block:: python

    import optuna
    import grokwatch
    from grokwatch.integrations.loop import LoopBudget
    from grokwatch.integrations.optuna import GrokwatchPruner, report

    def objective(trial):
        model = make_model(lr=trial.suggest_float("lr", 1e-4, 1e-2, log=True))
        agent = grokwatch.Agent(model, train=..., test=..., every=100, budget=5000,
                                policy=grokwatch.RunPolicy(), db=None)
        budget = LoopBudget(5000)
        for step in budget:
            loss = train_step(model)
            decision = agent.step(step, loss=loss)
            budget.follow(decision)            # a finished run just ends, an extension grows
            if decision.step == step:          # an evaluation: tell Optuna
                trial.report(test_accuracy(model), step)
                report(trial, decision)
                if trial.should_prune():
                    agent.close()
                    raise optuna.TrialPruned()
        agent.close()
        return test_accuracy(model)

    study = optuna.create_study(direction="maximize",
                                pruner=GrokwatchPruner(optuna.pruners.MedianPruner()))

:func:`report` stores the trial's latest grokwatch decision as the user attribute
``grokwatch``; :class:`GrokwatchPruner` reads it. A trial the run policy calls hopeless is
pruned. A *protected* trial -- the forecast alerts (``will_grok``), the policy extends it, or
its phase is ``grokking`` or ``generalized`` -- is never pruned, whatever the wrapped pruner
says. Every other trial is left to the wrapped pruner (none: not pruned). Trials without a
grokwatch decision go to the wrapped pruner too.
"""

from __future__ import annotations

from typing import Any

import optuna

from grokwatch.decision import Action, Decision, Phase, Reason

__all__ = ["ATTR", "GrokwatchPruner", "report"]

ATTR = "grokwatch"
"""The trial user attribute :func:`report` writes and the pruner reads."""

_PROTECTING_PHASES = frozenset({Phase.GROKKING.value, Phase.GENERALIZED.value})
_PROTECTING_REASONS = frozenset({Reason.WILL_GROK.value, Reason.GROKS_AFTER_BUDGET.value})


def report(trial: optuna.Trial, decision: Decision) -> None:
    """Store ``decision`` on ``trial`` for :class:`GrokwatchPruner` (JSON: action, reason,
    phase, step, P(grok within budget), message)."""
    f = decision.forecast
    trial.set_user_attr(
        ATTR,
        {
            "step": decision.step,
            "action": decision.action.value,
            "reason": decision.reason.value,
            "phase": None if decision.phase is None else decision.phase.value,
            "p_grok_budget": None if f is None else f.p_grok_budget,
            "alert": bool(f is not None and f.alert),
            "message": decision.message,
        },
    )


class GrokwatchPruner(optuna.pruners.BasePruner):
    """Prunes on grokwatch's advice, optionally wrapping another pruner (see the module
    docstring). :attr:`protected` counts the prunings of the wrapped pruner it overruled."""

    def __init__(self, wrapped: optuna.pruners.BasePruner | None = None) -> None:
        self.wrapped = wrapped
        self.protected = 0

    def prune(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> bool:
        advice: Any = trial.user_attrs.get(ATTR)
        if isinstance(advice, dict):
            if advice.get("action") == Action.STOP.value and advice.get("reason") == "hopeless":
                return True
            if (
                advice.get("action") == Action.EXTEND.value
                or advice.get("reason") in _PROTECTING_REASONS
                or advice.get("phase") in _PROTECTING_PHASES
                or advice.get("alert")
            ):
                if self.wrapped is not None and self.wrapped.prune(study, trial):
                    self.protected += 1
                return False
        return bool(self.wrapped is not None and self.wrapped.prune(study, trial))
