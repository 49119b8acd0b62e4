"""PyTorch Lightning: a ``Callback`` that feeds the agent and follows its stop/extend advice.

.. code-block:: python

    import lightning.pytorch as pl
    import grokwatch
    from grokwatch.integrations.lightning import GrokwatchCallback

    agent = grokwatch.Agent(module.net, train=(x_tr, y_tr), test=(x_te, y_te), every=100,
                            budget=10_000, policy=grokwatch.RunPolicy())
    trainer = pl.Trainer(max_steps=10_000, callbacks=[GrokwatchCallback(agent)])
    trainer.fit(module, loader)          # stops early or runs past 10 000 steps when advised

After every training batch the callback calls ``agent.step(trainer.global_step, loss=...)``
(the loss the ``training_step`` returned). A stop sets ``trainer.should_stop``; an extension
raises the fit loop's ``max_steps`` (or, for an epoch-based run without ``max_steps``,
``max_epochs`` by the epochs the extra steps take), at most to ``max_steps=`` given here. The
callback never changes the model or the optimizer (hooks observe; the advice is applied to the
trainer's limits only) and closes the agent when training ends (``close_agent=False`` keeps it
open).
"""

from __future__ import annotations

import math
from typing import Any

from lightning.pytorch.callbacks import Callback

from grokwatch.agent import Agent
from grokwatch.decision import Action, Decision
from grokwatch.integrations.loop import LoopBudget

__all__ = ["GrokwatchCallback"]


class GrokwatchCallback(Callback):
    """Lightning callback over an :class:`~grokwatch.Agent` (see the module docstring).

    ``max_steps`` caps extensions (``None``: the policy's ``max_extension`` alone).
    :attr:`budget` is the :class:`~grokwatch.integrations.LoopBudget` that applied the advice.
    """

    def __init__(
        self, agent: Agent, *, max_steps: int | None = None, close_agent: bool = True
    ) -> None:
        self.agent = agent
        self.max_steps = max_steps
        self.close_agent = close_agent
        self.budget: LoopBudget | None = None
        self.decision: Decision = agent.decision

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        limit = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        steps = self.agent.budget or limit or 1
        cap = None if self.max_steps is None else max(self.max_steps, steps)
        self.budget = LoopBudget(steps, max_steps=cap)

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self.decision = self.agent.step(trainer.global_step, loss=loss)  # never raises
        if self.decision.action is Action.CONTINUE or self.budget is None:
            return
        before = self.budget.total
        if self.budget.follow(self.decision):
            trainer.should_stop = True
            return
        grown = self.budget.total - before
        if grown <= 0:
            return
        loop = trainer.fit_loop
        if loop.epoch_loop.max_steps is not None and loop.epoch_loop.max_steps > 0:
            loop.epoch_loop.max_steps += grown
        elif loop.max_epochs is not None and loop.max_epochs > 0:
            per_epoch = max(int(trainer.num_training_batches or 1), 1)
            loop.max_epochs += math.ceil(grown / per_epoch)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.close_agent:
            self.agent.close()
