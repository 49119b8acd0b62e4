"""The two tasks of corpus v2 that are not modular arithmetic, generated locally.

Sparse parity (Barak et al. 2022, "Hidden progress in deep learning", arXiv 2207.08799). Inputs
are n random bits in {−1, +1}; the label is the parity of k fixed bits (class 1 when their
product is −1). SGD on an MLP learns it after a long flat stretch of the loss and then a sudden
drop; with a finite training set and weight decay the network first memorizes and generalizes
much later (Merrill et al. 2023, arXiv 2303.11873: grokking as competition between a dense
memorizing and a sparse generalizing sub-network). The k relevant bits are drawn from the
data seed, so runs differ in which bits matter, not only in their samples.

Permutation composition (Power et al. 2022, arXiv 2201.02177: S5 is one of their grokking
tables). Every pair (a, b) of elements of the symmetric group S_n is one example, labelled with
the index of a∘b ((a∘b)(i) = a(b(i))); a fraction of the (n!)² pairs is the training set. A
non-abelian group: its table has no Fourier structure over Z_p for the network to find. S4 (24
elements, 576 pairs) keeps a run CPU-sized; S5 (14,400 pairs) is accepted too.

Both return the modular-arithmetic `Dataset`, with `p` the number of classes: 2 for parity, n!
for S_n. Splits are drawn from a private generator seeded by `data_seed` (the global RNG that
initializes the model is not moved).
"""

from __future__ import annotations

import itertools
import math

import torch

from trainer.tasks import Dataset


def parity_dataset(n_bits: int, k: int, n_train: int, n_test: int, *, data_seed: int) -> Dataset:
    """`n_train` + `n_test` distinct random inputs of `n_bits` ±1 bits; label = parity of k bits.

    Inputs are float32 (N, n_bits) in {−1, +1}; labels (N,) long in {0, 1}. Raises ValueError
    naming the value for k outside [1, n_bits] or sizes that do not fit.
    """
    if not 1 <= k <= n_bits:
        raise ValueError(f"k must be in [1, n_bits={n_bits}], got {k=}")
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be >= 1, got {n_train=}, {n_test=}")
    if n_bits < 62 and n_train + n_test > 2**n_bits:
        raise ValueError(f"{n_train + n_test} distinct inputs do not exist with {n_bits=}")
    gen = torch.Generator().manual_seed(data_seed)
    relevant = torch.randperm(n_bits, generator=gen)[:k]  # (k,) the bits whose parity is asked
    # Draw more than needed and keep the first distinct rows: train and test never share an input.
    want = n_train + n_test
    bits = torch.randint(0, 2, (int(want * 1.1) + 16, n_bits), generator=gen)  # (M, n) 0/1
    _, first = _unique_rows_first(bits)
    while len(first) < want:  # only for tiny n_bits; resample until enough distinct rows exist
        more = torch.randint(0, 2, (want, n_bits), generator=gen)
        bits = torch.cat([bits, more])
        _, first = _unique_rows_first(bits)
    bits = bits[first[:want]]  # (want, n)
    x = 1.0 - 2.0 * bits.float()  # (want, n): bit 0 → +1, bit 1 → −1
    y = (bits[:, relevant].sum(dim=1) % 2).long()  # (want,): 1 when the product is −1
    return Dataset(
        train_x=x[:n_train],
        train_y=y[:n_train],
        test_x=x[n_train:],
        test_y=y[n_train:],
        p=2,
        op=f"parity{k}of{n_bits}",
    )


def _unique_rows_first(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(unique rows, index of each unique row's first occurrence in draw order)."""
    uniq, inverse = torch.unique(rows, dim=0, return_inverse=True)
    first = torch.full((len(uniq),), len(rows), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(rows)), reduce="amin")
    return uniq, first.sort().values


def permutations(n: int) -> torch.Tensor:
    """The n! permutations of range(n) in lexicographic order, (n!, n) long."""
    return torch.tensor(list(itertools.permutations(range(n))), dtype=torch.long)


def composition_table(n: int) -> torch.Tensor:
    """(n!, n!) long: entry [a, b] is the index of a∘b, with (a∘b)(i) = a(b(i))."""
    perms = permutations(n)  # (G, n)
    g = len(perms)
    composed = perms[:, None, :].expand(g, g, n).gather(2, perms[None, :, :].expand(g, g, n))
    # composed[a, b, i] = perms[a, perms[b, i]]; encode each permutation as a base-n number
    weights = n ** torch.arange(n - 1, -1, -1)  # (n,)
    code_of = {int(c): i for i, c in enumerate((perms * weights).sum(-1))}
    codes = (composed * weights).sum(-1)  # (G, G)
    return torch.tensor([[code_of[int(c)] for c in row] for row in codes], dtype=torch.long)


def permutation_dataset(n: int, frac: float, *, data_seed: int) -> Dataset:
    """All pairs of S_n (inputs (N, 2) element indices), a random `frac` of them for training."""
    if n not in (3, 4, 5):
        raise ValueError(f"n must be 3, 4 or 5 (S_n with n! elements), got {n=}")
    table = composition_table(n)  # (G, G)
    g = math.factorial(n)
    a = torch.arange(g).repeat_interleave(g)  # (G²,)
    b = torch.arange(g).repeat(g)  # (G²,)
    pairs = torch.stack([a, b], dim=1)  # (G², 2)
    labels = table[a, b]  # (G²,)
    n_train = round(frac * g * g)
    if not 0 < n_train < g * g:
        raise ValueError(f"frac={frac} leaves one side of the {g * g} pairs empty")
    gen = torch.Generator().manual_seed(data_seed)
    perm = torch.randperm(g * g, generator=gen)
    tr, te = perm[:n_train], perm[n_train:]
    return Dataset(
        train_x=pairs[tr], train_y=labels[tr], test_x=pairs[te], test_y=labels[te], p=g, op=f"s{n}"
    )
