"""Hugging Face ``transformers``: a ``TrainerCallback`` that follows stop/extend advice.

.. code-block:: python

    from transformers import Trainer, TrainingArguments
    import grokwatch
    from grokwatch.integrations.huggingface import GrokwatchCallback

    agent = grokwatch.Agent(model, train=..., test=..., every=100, budget=10_000,
                            policy=grokwatch.RunPolicy(max_extension=1.0))
    args = TrainingArguments("out", max_steps=20_000, ...)   # the hard cap: budget + extension
    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      callbacks=[GrokwatchCallback(agent)])
    trainer.train()                     # stops at 10 000 steps unless extended (or earlier)

At the start the callback sets ``state.max_steps`` (the step ``Trainer`` stops at) to the
agent's budget; an extension raises it, never past ``TrainingArguments.max_steps`` (the
Trainer sizes its data loop and learning-rate schedule from that, so it is the hard cap).
A stop sets ``control.should_training_stop``. After every optimizer step the callback calls
``agent.step(state.global_step, loss=...)`` with the last logged training loss. It never
touches the model or the optimizer, and closes the agent when training ends.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from grokwatch.agent import Agent
from grokwatch.decision import Action, Decision
from grokwatch.integrations.loop import LoopBudget

__all__ = ["GrokwatchCallback"]


class GrokwatchCallback(TrainerCallback):
    """``TrainerCallback`` over an :class:`~grokwatch.Agent` (see the module docstring)."""

    def __init__(self, agent: Agent, *, close_agent: bool = True) -> None:
        self.agent = agent
        self.close_agent = close_agent
        self.budget: LoopBudget | None = None
        self.decision: Decision = agent.decision
        self._loss: float | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        cap = int(state.max_steps)
        steps = min(self.agent.budget or cap, cap)
        self.budget = LoopBudget(max(steps, 1), max_steps=max(cap, steps, 1))
        state.max_steps = self.budget.total

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
    ) -> None:
        if logs and isinstance(logs.get("loss"), int | float):
            self._loss = float(logs["loss"])

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.decision = self.agent.step(state.global_step, loss=self._loss)  # never raises
        if self.decision.action is Action.CONTINUE or self.budget is None:
            return
        if self.budget.follow(self.decision):
            control.should_training_stop = True
        else:
            state.max_steps = self.budget.total
            if state.global_step < state.max_steps:
                control.should_training_stop = False

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.close_agent:
            self.agent.close()
