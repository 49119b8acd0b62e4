"""Modular arithmetic tasks: labels against brute force, and the split's contract."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from trainer.tasks import OPS, is_prime, make_dataset

BRUTE = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,
    "mul": lambda a, b, p: (a * b) % p,
    "div": lambda a, b, p: next(c for c in range(p) if (c * b) % p == a),  # c·b ≡ a
    "x2y2": lambda a, b, p: (a**2 + b**2) % p,
    "x2xyy2": lambda a, b, p: (a**2 + a * b + b**2) % p,
    "x3xy": lambda a, b, p: (a**3 + a * b) % p,
}


def test_brute_force_covers_every_op() -> None:
    assert set(BRUTE) == set(OPS)


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("p", [2, 7, 13])
def test_labels_match_brute_force(op: str, p: int) -> None:
    data = make_dataset(p, op, 0.5, data_seed=0)
    for x, y in ((data.train_x, data.train_y), (data.test_x, data.test_y)):
        for (a, b), c in zip(x.tolist(), y.tolist(), strict=True):
            assert c == BRUTE[op](a, b, p), (op, p, a, b)


def test_large_p_cubic_does_not_overflow() -> None:
    p = 1009
    x = torch.tensor([[p - 1, p - 2], [500, 7]])
    got = OPS["x3xy"](x[:, 0], x[:, 1], p).tolist()
    assert got == [BRUTE["x3xy"](a, b, p) for a, b in x.tolist()]


@pytest.mark.parametrize(
    ("op", "frac", "n_train", "n_test"),
    [
        ("add", 0.5, 264, 265),
        ("mul", 0.3, 159, 370),
        ("div", 0.5, 253, 253),
        ("x3xy", 0.9, 476, 53),
    ],
)
def test_split_sizes(op: str, frac: float, n_train: int, n_test: int) -> None:
    data = make_dataset(23, op, frac, data_seed=0)
    assert data.train_x.shape == (n_train, 2)
    assert data.train_y.shape == (n_train,)
    assert data.test_x.shape == (n_test, 2)
    assert data.test_y.shape == (n_test,)
    assert data.train_x.dtype == data.train_y.dtype == torch.long
    assert (data.p, data.op) == (23, op)


@pytest.mark.parametrize("op", ["add", "div"])
def test_train_and_test_are_disjoint_and_cover_all_pairs(op: str) -> None:
    p = 17
    data = make_dataset(p, op, 0.4, data_seed=3)
    train = {tuple(r) for r in data.train_x.tolist()}
    test = {tuple(r) for r in data.test_x.tolist()}
    expected = {(a, b) for a in range(p) for b in range(p) if op != "div" or b != 0}
    assert not train & test
    assert train | test == expected
    assert len(train) + len(test) == len(expected)  # no duplicates either


def test_split_is_deterministic_per_data_seed_and_differs_across_seeds() -> None:
    a = make_dataset(19, "add", 0.5, data_seed=7)
    b = make_dataset(19, "add", 0.5, data_seed=7)
    c = make_dataset(19, "add", 0.5, data_seed=8)
    assert torch.equal(a.train_x, b.train_x)
    assert torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_x, c.train_x)


def test_split_ignores_global_seed() -> None:
    torch.manual_seed(0)
    a = make_dataset(19, "add", 0.5, data_seed=1)
    torch.manual_seed(12345)
    b = make_dataset(19, "add", 0.5, data_seed=1)
    assert torch.equal(a.train_x, b.train_x)


def test_global_rng_untouched() -> None:
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    before = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    make_dataset(31, "div", 0.5, data_seed=5)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert random.getstate() == before[1]
    assert np.array_equal(np.random.get_state()[1], before[2])


@pytest.mark.parametrize("p", [4, 9, 15, 91])
def test_div_refuses_non_prime_p(p: int) -> None:
    with pytest.raises(ValueError, match=rf"p={p}: not prime"):
        make_dataset(p, "div", 0.5, data_seed=0)


def test_other_ops_accept_composite_p() -> None:
    assert make_dataset(12, "mul", 0.5, data_seed=0).p == 12


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"p": 7, "op": "pow", "frac": 0.5}, "op"),
        ({"p": 1, "op": "add", "frac": 0.5}, "p=1"),
        ({"p": 7, "op": "add", "frac": 0.001}, "frac=0.001"),
        ({"p": 7, "op": "add", "frac": 0.999}, "frac=0.999"),
    ],
)
def test_make_dataset_rejects_bad_input(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_dataset(**kwargs, data_seed=0)


def test_is_prime() -> None:
    primes = [n for n in range(60) if is_prime(n)]
    assert primes == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59]
    assert is_prime(97)
    assert is_prime(7919)
    assert not is_prime(7917)
    assert not is_prime(-7)


def test_dataset_to_device_keeps_the_split() -> None:
    data = make_dataset(11, "add", 0.5, data_seed=0)
    moved = data.to("cpu")
    assert torch.equal(moved.train_x, data.train_x)
    assert (moved.p, moved.op) == (data.p, data.op)
