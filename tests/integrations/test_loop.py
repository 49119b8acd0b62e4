"""The plain-loop helper: LoopBudget grows on an extension and ends on a stop, once each."""

from __future__ import annotations

import pytest
import torch
from _task import (
    BUDGET,
    EXTEND,
    EXTENDED,
    HOPELESS,
    LR,
    agent,
    data,
    mlp,
    one_thread,  # noqa: F401 (autouse fixture)
)

from grokwatch import Action, Decision, Reason
from grokwatch.exceptions import ConfigError
from grokwatch.integrations import LoopBudget


def train(p: float, policy, budget: int) -> tuple[LoopBudget, int]:
    model = mlp()
    watch = agent(model, p, policy, budget=budget)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    (x, y), _ = data()
    loop = LoopBudget(budget)
    last = -1
    for step in loop:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loop.follow(watch.step(step, loss=loss))
        last = step
    watch.close()
    return loop, last


def test_a_hopeless_run_stops_early() -> None:
    loop, last = train(0.0, HOPELESS, BUDGET)
    assert loop.stopped is not None and loop.stopped.reason is Reason.HOPELESS
    assert last < BUDGET // 2
    assert loop.outcome.startswith(f"stopped at {loop.stopped.step}")


def test_a_run_about_to_grok_is_extended_once_within_bounds() -> None:
    loop, last = train(0.9, EXTEND, BUDGET)
    assert loop.stopped is None
    assert loop.total == EXTENDED and len(loop.extensions) == 1  # 50 % of the budget, once
    assert last == EXTENDED - 1


def test_the_same_decision_is_applied_once() -> None:
    loop = LoopBudget(100, max_steps=150)
    d = Decision(
        step=90, action=Action.EXTEND, reason=Reason.GROKS_AFTER_BUDGET, message="", extend_steps=80
    )
    for _ in range(5):
        assert loop.follow(d) is False
    assert loop.total == 150  # capped by max_steps, and applied once
    stop = Decision(step=120, action=Action.STOP, reason=Reason.FINISHED, message="done")
    assert loop.follow(stop) is True and loop.follow(d) is True
    assert list(loop) == []


def test_bad_budgets_name_the_value() -> None:
    with pytest.raises(ConfigError, match="steps"):
        LoopBudget(0)
    with pytest.raises(ConfigError, match="max_steps"):
        LoopBudget(100, max_steps=50)
