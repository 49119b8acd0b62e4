"""Tiny seed-000-style model and modular-addition data, built without the trainer."""

from __future__ import annotations

import torch
from torch import nn

P = 11


class TinyMLP(nn.Module):
    """Embedding shared by both operands -> concat -> Linear -> ReLU -> Linear (seed 000)."""

    def __init__(self, p: int = P, d: int = 8, hidden: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(p, d)
        self.hidden = nn.Linear(2 * d, hidden)
        self.act = nn.ReLU()
        self.out = nn.Linear(hidden, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embed(x).flatten(1)  # (N, 2d)
        return self.out(self.act(self.hidden(e)))


def addition_data(p: int = P, frac: float = 0.5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    x = torch.stack([a.ravel(), b.ravel()], 1)
    y = (x[:, 0] + x[:, 1]) % p
    perm = torch.randperm(len(x), generator=g)
    n = int(frac * len(x))
    return (x[perm[:n]], y[perm[:n]]), (x[perm[n:]], y[perm[n:]])
