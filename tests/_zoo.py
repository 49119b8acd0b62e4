"""Small models of the kinds people train, each with its probe data (modular addition, p = 11).

Each entry says where the probes should find the hidden representation, so the tests can
recompute every probe value by hand with their own hooks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

P = 11
D = 16


def pairs(p: int = P, frac: float = 0.5, seed: int = 0):
    """All (a, b) pairs with target (a + b) mod p, split into train and test."""
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    x = torch.stack([a.ravel(), b.ravel()], 1)  # (p*p, 2)
    y = (x[:, 0] + x[:, 1]) % p
    perm = torch.randperm(len(x), generator=gen)
    n = int(frac * len(x))
    return (x[perm[:n]], y[perm[:n]]), (x[perm[n:]], y[perm[n:]])


class MLP(nn.Module):
    """Seed-000: shared embedding -> concat -> Linear -> ReLU module -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(P, D)
        self.fc = nn.Linear(2 * D, 32)
        self.act = nn.ReLU()
        self.out = nn.Linear(32, P)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.fc(self.embed(x).flatten(1))))  # (N, P)


class TwoInputMLP(MLP):
    """The same, called as ``model(a, b)``, with a functional ReLU."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        e = torch.cat([self.embed(a), self.embed(b)], -1)  # (N, 2D)
        return self.out(F.relu(self.fc(e)))


class Block(nn.Module):
    """Pre-LN attention + GELU MLP (functional) in the given layout."""

    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.attn = nn.MultiheadAttention(D, 2, batch_first=batch_first)
        self.fc_in = nn.Linear(D, 4 * D)
        self.fc_out = nn.Linear(4 * D, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc_out(F.gelu(self.fc_in(self.ln2(x))))


class Transformer(nn.Module):
    """Tokens [a, b, =] -> one block -> logits at every position.

    Batch-first: ``(N, 3)`` -> ``(N, 3, P)``; sequence-first (the layout of the public grokking
    script of issue 18): ``(3, N)`` -> ``(3, N, P)`` returned as ``(logits, None)``.
    """

    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.embed = nn.Embedding(P + 1, D)
        self.pos = nn.Parameter(torch.randn(3, D) / 4)
        self.block = Block(batch_first)
        self.ln = nn.LayerNorm(D)
        self.head = nn.Linear(D, P)

    def forward(self, tokens: torch.Tensor) -> Any:
        pos = self.pos if self.batch_first else self.pos[:, None]
        logits = self.head(self.ln(self.block(self.embed(tokens) + pos)))
        return logits if self.batch_first else (logits, None)


def with_equals(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.full((len(x), 1), P)], 1)  # (N, 3)


class LSTM(nn.Module):
    """Embedding -> LSTM -> last hidden state -> Linear; no activation module at all."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(P, D)
        self.lstm = nn.LSTM(D, 24, batch_first=True)
        self.head = nn.Linear(24, P)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(x))  # (N, 2, 24)
        return self.head(out[:, -1])


class CNN(nn.Module):
    """(N, 1, 8, 8) images: conv -> ReLU -> conv -> ReLU -> mean pool -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.act2 = nn.ReLU()
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act2(self.conv2(self.act1(self.conv1(x))))  # (N, 8, 8, 8)
        return self.head(h.mean((2, 3)))


def images(seed: int = 0):
    """Four classes of 8x8 images: a bright quadrant plus noise."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (96,), generator=gen)
    x = 0.3 * torch.randn(96, 1, 8, 8, generator=gen)
    for i, label in enumerate(y.tolist()):
        r, c = divmod(label, 2)
        x[i, 0, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] += 1.0
    return (x[:48], y[:48]), (x[48:], y[48:])


@dataclasses.dataclass
class Case:
    """A model, its probe data, and where its hidden layer is (module, "output"/"input", axis)."""

    name: str
    build: Callable[[], nn.Module]
    data: Callable[[], tuple[Any, Any]]
    hidden: tuple[str, str, int]
    output_axis: int = 0


def _transformer_data(batch_first: bool):
    (xtr, ytr), (xte, yte) = pairs()
    if batch_first:
        return (with_equals(xtr), ytr), (with_equals(xte), yte)
    return (with_equals(xtr).T, ytr), (with_equals(xte).T, yte)  # (3, N) sequence-first


def _two_input_data():
    (xtr, ytr), (xte, yte) = pairs()
    return ((xtr[:, 0], xtr[:, 1]), ytr), ((xte[:, 0], xte[:, 1]), yte)


CASES = [
    Case("mlp", MLP, pairs, ("act", "output", 0)),
    Case("mlp_two_inputs", TwoInputMLP, _two_input_data, ("out", "input", 0)),
    Case(
        "transformer_batch_first",
        lambda: Transformer(True),
        lambda: _transformer_data(True),
        ("block.fc_out", "input", 0),
    ),
    Case(
        "transformer_sequence_first",
        lambda: Transformer(False),
        lambda: _transformer_data(False),
        ("block.fc_out", "input", 1),
        output_axis=1,
    ),
    Case("lstm", LSTM, pairs, ("head", "input", 0)),
    Case("cnn", CNN, images, ("act2", "output", 0)),
]
