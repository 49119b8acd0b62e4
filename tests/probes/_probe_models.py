"""Tiny models, data and contexts for the probe tests (imported by the test modules).

``ModAddMLP`` is the seed-000 model at p = 11: a shared ``Embedding(p, 8)`` for both operands,
concatenated, ``Linear(16, 32)``, ``ReLU``, ``Linear(32, p)``. The variants each lack one thing a
probe may need (an embedding, an activation module, any ``nn.Linear``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from grokwatch.probes import Layout, ProbeContext

P = 11
Data = tuple[torch.Tensor, torch.Tensor]


class ModAddMLP(nn.Module):
    """Seed-000 architecture: shared embedding -> concat -> Linear -> ReLU -> Linear."""

    def __init__(self, p: int = P, dim: int = 8, hidden: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(p, dim)
        self.mlp = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(), nn.Linear(hidden, p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.embed(x).flatten(1))  # (N, 2) -> (N, 2 dim) -> (N, p)


class NoActivationMLP(ModAddMLP):
    """The same network with the ReLU applied functionally: no activation module to hook."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, _, last = self.mlp
        return last(torch.relu(first(self.embed(x).flatten(1))))


class OneHotMLP(nn.Module):
    """No embedding: one-hot operands (N, 2p) -> Linear -> ReLU -> Linear."""

    def __init__(self, p: int = P, hidden: int = 32) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * p, hidden), nn.ReLU(), nn.Linear(hidden, p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class NoLinearMLP(nn.Module):
    """Embedding and ReLU, but the layers are bare matmuls: no ``nn.Linear`` at all."""

    def __init__(self, p: int = P, dim: int = 8, hidden: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(p, dim)
        self.w1 = nn.Parameter(torch.randn(2 * dim, hidden) / 4)
        self.act = nn.ReLU()
        self.w2 = nn.Parameter(torch.randn(hidden, p) / 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.embed(x).flatten(1) @ self.w1) @ self.w2


def modadd_data(p: int = P, *, frac: float = 0.5, seed: int = 0) -> tuple[Data, Data]:
    """All pairs (a, b) with target (a + b) mod p, split at random into train and test."""
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    x = torch.stack([a.ravel(), b.ravel()], 1)  # (p*p, 2)
    y = (x[:, 0] + x[:, 1]) % p
    perm = torch.randperm(len(x), generator=gen)
    n = int(frac * len(x))
    return (x[perm[:n]], y[perm[:n]]), (x[perm[n:]], y[perm[n:]])


def one_hot_pairs(data: Data, p: int = P) -> Data:
    x, y = data
    return nn.functional.one_hot(x, p).flatten(1).float(), y  # (N, 2p)


def seeded(factory: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    """Build a model from a fixed seed without moving the global RNG streams."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def train_one_step(model: nn.Module, data: Data) -> torch.optim.Optimizer:
    """One full-batch backward and AdamW step; the gradients are left in place."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1.0, betas=(0.9, 0.98))
    x, y = data
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    return opt


def context(
    model: nn.Module,
    train: Data | None,
    test: Data | None,
    *,
    step: int = 7,
    losses: Sequence[float] = tuple(1.0 / (1 + i) + 0.01 * (-1) ** i for i in range(30)),
    modulus: int | None = P,
    snapshot: bool = True,
    **kwargs: Any,
) -> ProbeContext:
    """A probe context with the layout discovered from the model."""
    return ProbeContext(
        model,
        step=step,
        layout=Layout.discover(model),
        train=train,
        test=test,
        train_losses=losses,
        modulus=modulus,
        snapshot=snapshot,
        **kwargs,
    )


@dataclasses.dataclass
class Setup:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    train: Data
    test: Data
