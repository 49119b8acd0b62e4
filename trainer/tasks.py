"""Modular arithmetic tasks: learn (a ∘ b) mod p from a fraction of the p² pairs.

The algorithmic data sets of Power et al. 2022 (arXiv 2201.02177) on which grokking was first
seen. Every pair (a, b) with a, b in Z_p is one example (b = 0 is left out for division, so
division has p·(p−1) examples); a random fraction `frac` of them is the training set and the rest
the test set. The split is drawn from a private torch.Generator seeded by `data_seed`, so building
a data set never moves the global RNG that the training run owns, and the same `data_seed` always
gives the same split whatever the model seed is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch


def is_prime(n: int) -> bool:
    """Trial division; p is at most a few thousand here."""
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    d = 3
    while d * d <= n:
        if n % d == 0:
            return False
        d += 2
    return True


def _div(a: torch.Tensor, b: torch.Tensor, p: int) -> torch.Tensor:
    # a · b⁻¹ mod p. Inverses come from Fermat's little theorem via Python's pow(b, -1, p);
    # a lookup table of p entries is cheaper than modular exponentiation on tensors.
    inverse = torch.tensor([0] + [pow(i, -1, p) for i in range(1, p)], dtype=torch.long)  # (p,)
    return a * inverse[b] % p


# op name -> (a, b, p) -> (a ∘ b) mod p, on long tensors of residues. Operands are reduced
# before each product so x³ stays far from int64 overflow for any p a CPU run will use.
OPS: dict[str, Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]] = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,  # torch's % follows the divisor's sign: result in [0, p)
    "mul": lambda a, b, p: a * b % p,
    "div": _div,
    "x2y2": lambda a, b, p: (a * a + b * b) % p,
    "x2xyy2": lambda a, b, p: (a * a + a * b + b * b) % p,
    "x3xy": lambda a, b, p: (a * a % p * a + a * b) % p,
}


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: tensors have no truth value
class Dataset:
    """A train/test split of one modular arithmetic task.

    `*_x` are (N, 2) long tensors of operand pairs (a, b), `*_y` are (N,) long tensors of
    (a ∘ b) mod p.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    p: int
    op: str

    def to(self, device: torch.device | str) -> Dataset:
        """The same split with every tensor on `device`."""
        return dataclasses.replace(
            self,
            train_x=self.train_x.to(device),
            train_y=self.train_y.to(device),
            test_x=self.test_x.to(device),
            test_y=self.test_y.to(device),
        )


def all_pairs(p: int, op: str) -> torch.Tensor:
    """Every valid operand pair, (p², 2) — or (p·(p−1), 2) for division, which skips b = 0."""
    a = torch.arange(p).repeat_interleave(p)  # (p²,) 0,0,…,0,1,1,…
    b = torch.arange(p).repeat(p)  # (p²,) 0,1,…,p−1,0,1,…
    pairs = torch.stack([a, b], dim=1)  # (p², 2)
    if op == "div":
        pairs = pairs[pairs[:, 1] != 0]  # (p·(p−1), 2)
    return pairs


def n_train_examples(p: int, op: str, frac: float) -> tuple[int, int]:
    """(training examples, all examples) for this task and fraction.

    round() rather than int(): 0.29 · 100 is 28.999… in floating point.
    """
    n = p * (p - 1) if op == "div" else p * p
    return round(frac * n), n


def make_dataset(p: int, op: str, frac: float, *, data_seed: int) -> Dataset:
    """All pairs of the task `op` mod `p`, split at random into train (`frac`) and test.

    Raises ValueError naming the value for an unknown op, a p below 2, a non-prime p for
    division (b⁻¹ only exists for every b ≠ 0 when p is prime), or a fraction that leaves one
    side of the split empty.
    """
    if op not in OPS:
        raise ValueError(f"op must be one of {sorted(OPS)}, got {op=}")
    if p < 2:
        raise ValueError(f"p must be >= 2, got {p=}")
    if op == "div" and not is_prime(p):
        raise ValueError(f"op 'div' needs a prime modulus (b⁻¹ mod p), got p={p}: not prime")
    n_train, n = n_train_examples(p, op, frac)
    if not 0 < n_train < n:
        raise ValueError(
            f"frac={frac} puts {n_train} of the {n} pairs in the training set; "
            "both train and test need at least one example"
        )

    pairs = all_pairs(p, op)  # (n, 2)
    labels = OPS[op](pairs[:, 0], pairs[:, 1], p)  # (n,)

    # A private generator: the split depends on data_seed alone, and the global RNG stream
    # (which seeds the model's initialization) is left exactly where it was.
    gen = torch.Generator().manual_seed(data_seed)
    perm = torch.randperm(n, generator=gen)  # (n,)
    train_idx, test_idx = perm[:n_train], perm[n_train:]
    return Dataset(
        train_x=pairs[train_idx],  # (n_train, 2)
        train_y=labels[train_idx],  # (n_train,)
        test_x=pairs[test_idx],  # (n − n_train, 2)
        test_y=labels[test_idx],  # (n − n_train,)
        p=p,
        op=op,
    )
