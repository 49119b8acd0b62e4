"""Ray Tune: a ``Stopper`` that ends hopeless and finished trials and keeps the step budget.

.. code-block:: python

    from ray import tune
    import grokwatch
    from grokwatch.integrations.loop import LoopBudget
    from grokwatch.integrations.ray import GrokwatchStopper, report_fields

    def trainable(config):
        model = make_model(config)
        agent = grokwatch.Agent(model, train=..., test=..., every=100, budget=5000,
                                policy=grokwatch.RunPolicy(), db=None)
        budget = LoopBudget(5000)
        for step in budget:
            loss = train_step(model)
            decision = agent.step(step, loss=loss)
            budget.follow(decision)
            if decision.step == step:                       # an evaluation
                tune.report({"test_accuracy": acc(model), "step": step,
                             **report_fields(decision, budget)})
        agent.close()

    tuner = tune.Tuner(trainable, param_space=...,
                       run_config=tune.RunConfig(stop=GrokwatchStopper()))
    tuner.fit()

:func:`report_fields` adds the decision (``grokwatch_action``, ``grokwatch_reason``,
``grokwatch_phase``, ``grokwatch_p_grok``) and the trial's current budget
(``grokwatch_budget``, grown by extensions) to the reported metrics.
:class:`GrokwatchStopper` stops a trial whose action is ``stop`` (hopeless or finished), or
whose ``step`` reached its ``grokwatch_budget``; it never stops the whole experiment.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ray.tune import Stopper

from grokwatch.decision import Action, Decision
from grokwatch.integrations.loop import LoopBudget

__all__ = ["GrokwatchStopper", "report_fields"]


def report_fields(decision: Decision, budget: LoopBudget | None = None) -> dict[str, Any]:
    """The metrics that carry ``decision`` (and the budget) to :class:`GrokwatchStopper`."""
    f = decision.forecast
    p = math.nan if f is None else f.p_grok_budget
    out: dict[str, Any] = {
        "grokwatch_action": decision.action.value,
        "grokwatch_reason": decision.reason.value,
        "grokwatch_phase": "" if decision.phase is None else decision.phase.value,
        "grokwatch_p_grok": p,
        "grokwatch_extend_steps": decision.extend_steps,
    }
    if budget is not None:
        out["grokwatch_budget"] = budget.total
    return out


class GrokwatchStopper(Stopper):
    """Stops trials on grokwatch's advice (see the module docstring).

    ``step_key`` names the reported step (``"step"``; ``training_iteration`` when absent).
    :attr:`stopped` maps each stopped trial to the reason.
    """

    def __init__(self, *, step_key: str = "step") -> None:
        self.step_key = step_key
        self.stopped: dict[str, str] = {}

    def __call__(self, trial_id: str, result: Mapping[str, Any]) -> bool:
        if result.get("grokwatch_action") == Action.STOP.value:
            self.stopped[trial_id] = str(result.get("grokwatch_reason", "stop"))
            return True
        budget = result.get("grokwatch_budget")
        step = result.get(self.step_key, result.get("training_iteration"))
        if isinstance(budget, int | float) and isinstance(step, int | float) and step >= budget:
            self.stopped[trial_id] = "budget"
            return True
        return False

    def stop_all(self) -> bool:
        return False
