"""A training loop's step budget that follows stop/extend advice (the framework-free core).

.. code-block:: python

    policy = grokwatch.RunPolicy()                       # opt-in: advice only with a policy
    agent = grokwatch.Agent(model, train=..., test=..., budget=10_000, policy=policy)
    budget = LoopBudget(10_000, max_steps=20_000)        # max_steps: the hard cap
    for step in budget:                                  # grows when extended, ends when stopped
        loss = train_step()
        budget.follow(agent.step(step, loss=loss))
    agent.close()
    print(budget.outcome)                                # e.g. "stopped at 4500: hopeless ..."

``decision.should_stop`` / ``decision.should_extend`` can also be read directly; the
:class:`LoopBudget` adds what a loop otherwise gets wrong: ``Agent.step`` returns the same
decision at every step until the next evaluation, so an extension must be applied once, not
at every step.
"""

from __future__ import annotations

from collections.abc import Iterator

from grokwatch.decision import Action, Decision
from grokwatch.exceptions import ConfigError

__all__ = ["LoopBudget"]


class LoopBudget:
    """The steps a loop may run: ``steps`` at first, grown by extensions, cut by a stop.

    ``max_steps`` caps every extension (``None``: no cap besides the policy's own
    ``max_extension``). :meth:`follow` applies each advised stop or extension once (a
    decision is identified by its step and action) and returns whether the loop should stop.
    """

    def __init__(self, steps: int, *, max_steps: int | None = None) -> None:
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ConfigError(f"steps must be a positive int, got {steps=!r}")
        if max_steps is not None and (not isinstance(max_steps, int) or max_steps < steps):
            raise ConfigError(f"max_steps must be None or an int >= steps, got {max_steps=!r}")
        self.initial = steps
        self.total = steps
        """The current budget: the loop runs steps ``0 .. total - 1``."""
        self.max_steps = max_steps
        self.stopped: Decision | None = None
        """The stop decision that ended the loop, if one did."""
        self.extensions: list[Decision] = []
        self._seen: set[tuple[int, Action]] = set()

    def follow(self, decision: Decision) -> bool:
        """Apply ``decision`` (once); ``True`` when the loop should stop now."""
        if self.stopped is not None:
            return True
        key = (decision.step, decision.action)
        if decision.action is Action.CONTINUE or key in self._seen:
            return False
        self._seen.add(key)
        if decision.action is Action.STOP:
            self.stopped = decision
            return True
        grow = max(int(decision.extend_steps), 0)
        if self.max_steps is not None:
            grow = min(grow, self.max_steps - self.total)
        if grow > 0:
            self.total += grow
            self.extensions.append(decision)
        return False

    @property
    def extended(self) -> int:
        """Steps added by extensions so far."""
        return self.total - self.initial

    @property
    def outcome(self) -> str:
        """What happened to the budget, in words."""
        if self.stopped is not None:
            return f"stopped at {self.stopped.step}: {self.stopped.message}"
        if self.extended:
            return f"extended by {self.extended} steps to {self.total}"
        return f"ran the budget of {self.total} steps"

    def __iter__(self) -> Iterator[int]:
        """Steps ``0, 1, ...`` while below :attr:`total` (read afresh each step) and not
        stopped."""
        step = 0
        while step < self.total and self.stopped is None:
            yield step
            step += 1
