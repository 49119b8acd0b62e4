"""A task that memorizes in a few dozen steps and never generalizes (random labels): its
phase is ``plateau`` soon, so the run policy's advice depends only on the forecast the test
double gives."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

import grokwatch
from grokwatch import ConstantForecaster, RunPolicy

N, D, CLASSES = 32, 8, 4
BUDGET, EVERY, LR = 120, 10, 3e-2
"""Memorized after ~50 steps; an extension adds half the budget."""
EXTENDED = BUDGET + BUDGET // 2


def data(seed: int = 0) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g)
    train = (x, torch.randint(0, CLASSES, (N,), generator=g))
    test = (torch.randn(N, D, generator=g), torch.randint(0, CLASSES, (N,), generator=g))
    return train, test


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(D, 64), nn.ReLU(), nn.Linear(64, CLASSES))


HOPELESS = RunPolicy(patience=2, min_fraction=0.2, extend=False, stop_finished=False)
"""With ``ConstantForecaster(0.0)`` (uncalibrated: its own hopeless flag): stops at ~25 %."""
EXTEND = RunPolicy(stop_hopeless=False, stop_finished=False, max_extension=0.5)
"""With ``ConstantForecaster(0.9)``: extends once by half the budget at its end."""


def agent(
    model: nn.Module,
    p: float,
    policy: RunPolicy,
    *,
    budget: int = BUDGET,
    every: int = EVERY,
    seed: int = 0,
    probe_data: tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]] | None = None,
) -> grokwatch.Agent:
    """An agent on ``model`` whose forecast is the constant ``p`` (probe sets: :func:`data`
    unless ``probe_data`` is given)."""
    train, test = probe_data or data(seed)
    return grokwatch.Agent(
        model,
        train=train,
        test=test,
        every=every,
        budget=budget,
        probes=["loss_accuracy"],
        db=None,
        forecaster=ConstantForecaster(p),
        policy=policy,
    )


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread per test (restored afterwards): a busy machine's thread contention
    otherwise multiplies the time of these tiny models. Imported by each test module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
