"""The families corpus v2 adds: sparse parity and permutation composition (trainer.datasets).

Parity. An MLP on n ±1 bits → [Linear → ReLU] × depth → Linear 2, cross-entropy; PyTorch's
default init × `init_scale`. Barak et al. 2022 train width-1000 MLPs with SGD on n = 50, k = 3
on fresh samples; here a finite training set of `n_train` inputs (a few hundred to a few
thousand) and weight decay make the run memorize first and generalize later (Merrill et al.
2023), small enough for a CPU.

Permutations. The seed-000 MLP of `trainer.model` (shared embedding of the n! elements,
factorized first layer) on the composition table of S_n: the modular-arithmetic recipe on a
non-abelian group.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
from torch import nn

from trainer.configbase import TrainingConfig


@dataclasses.dataclass(frozen=True)
class ParityConfig(TrainingConfig):
    n_bits: int = 30
    k: int = 3
    n_train: int = 1000
    n_test: int = 1000
    width: int = 128
    depth: int = 1

    INTS: ClassVar = (*TrainingConfig.INTS, "n_bits", "k", "n_train", "n_test", "width", "depth")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.k <= self.n_bits:
            self._fail("k", f"in [1, n_bits={self.n_bits}]")
        if self.n_bits > 64:
            self._fail("n_bits", "<= 64")
        for key in ("n_train", "n_test", "width"):
            if getattr(self, key) <= 0:
                self._fail(key, "> 0")
        if self.n_bits < 20 and self.n_train + self.n_test > 2**self.n_bits:
            self._fail("n_train", f"such that n_train + n_test <= 2**n_bits={2**self.n_bits}")
        if self.depth not in (1, 2):
            self._fail("depth", "1 or 2")
        if self.optimizer == "emb_lr10":
            self._fail("optimizer", "not 'emb_lr10' (the parity MLP has no embedding)")


@dataclasses.dataclass(frozen=True)
class PermConfig(TrainingConfig):
    n: int = 4  # the group S_n
    frac: float = 0.5
    d_emb: int = 32
    d_hidden: int = 64
    depth: int = 1

    INTS: ClassVar = (*TrainingConfig.INTS, "n", "d_emb", "d_hidden", "depth")
    FLOATS: ClassVar = (*TrainingConfig.FLOATS, "frac")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n not in (3, 4, 5):
            self._fail("n", "3, 4 or 5")
        g2 = math.factorial(self.n) ** 2
        if not 0 < round(self.frac * g2) < g2:
            self._fail("frac", f"such that train and test are both non-empty ({g2} pairs)")
        for key in ("d_emb", "d_hidden"):
            if getattr(self, key) <= 0:
                self._fail(key, "> 0")
        if self.depth not in (1, 2):
            self._fail("depth", "1 or 2")


class ParityMLP(nn.Module):
    """n_bits → [Linear → ReLU] × depth → Linear 2; `act` is the last activation, `out` the
    last Linear (the probe contract)."""

    def __init__(self, config: ParityConfig) -> None:
        super().__init__()
        self.depth = config.depth
        self.hidden = nn.Linear(config.n_bits, config.width)
        self.act = nn.ReLU()
        if config.depth == 2:
            self.hidden2 = nn.Linear(config.width, config.width)
            self.act2 = nn.ReLU()
        self.out = nn.Linear(config.width, 2)
        with torch.no_grad():
            for param in self.parameters():
                if param.dim() >= 2:
                    param.mul_(config.init_scale)  # PyTorch's default init, × init_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.hidden(x))  # (N, width)
        if self.depth == 2:
            h = self.act2(self.hidden2(h))  # (N, width)
        return self.out(h)  # (N, 2)
