"""The corpus-v2 tasks: sparse parity and permutation composition give the labels they claim,
splits are disjoint and reproducible, and every family's model has the shapes it says."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from trainer.config import RunConfig
from trainer.datasets import composition_table, parity_dataset, permutation_dataset, permutations
from trainer.families import (
    FAMILIES,
    DigitsConfig,
    TransformerConfig,
    build,
    loss_of,
    mse_one_hot,
)
from trainer.families_v2 import ParityConfig, PermConfig


def test_parity_labels_are_the_parity_of_k_fixed_bits() -> None:
    data = parity_dataset(12, 3, 300, 200, data_seed=4)
    x = torch.cat([data.train_x, data.test_x])  # (500, 12) in {−1, +1}
    y = torch.cat([data.train_y, data.test_y])
    assert set(x.unique().tolist()) == {-1.0, 1.0}
    # exactly one set of 3 bits explains every label: the product of those bits is −1 ⟺ y = 1
    explaining = [
        c for c in itertools.combinations(range(12), 3)
        if torch.equal((x[:, list(c)].prod(dim=1) < 0).long(), y)
    ]  # fmt: skip
    assert len(explaining) == 1
    assert 0.35 < y.float().mean().item() < 0.65  # parity is balanced


def test_parity_train_and_test_never_share_an_input_and_repeat_by_seed() -> None:
    a = parity_dataset(10, 2, 400, 300, data_seed=1)
    b = parity_dataset(10, 2, 400, 300, data_seed=1)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    rows = {tuple(r.tolist()) for r in a.train_x}
    assert len(rows) == 400
    assert not rows & {tuple(r.tolist()) for r in a.test_x}
    c = parity_dataset(10, 2, 400, 300, data_seed=2)
    assert not torch.equal(a.train_x, c.train_x)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"k": 0}, "k must be"), ({"k": 11}, "k must be"), ({"n_train": 1000}, "distinct inputs")],
)
def test_parity_refuses_impossible_sizes(kwargs: dict[str, int], match: str) -> None:
    args = {"n_bits": 10, "k": 3, "n_train": 100, "n_test": 100, **kwargs}
    with pytest.raises(ValueError, match=match):
        parity_dataset(**args, data_seed=0)


def test_composition_table_is_the_group_law_of_s_n() -> None:
    perms = permutations(4)  # (24, 4)
    table = composition_table(4)  # (24, 24)
    for a, b in [(0, 0), (3, 17), (23, 5), (11, 11)]:
        composed = [perms[a][perms[b][i]].item() for i in range(4)]  # (a∘b)(i) = a(b(i))
        assert perms[table[a, b]].tolist() == composed
    identity = 0  # lexicographic order starts with the identity
    assert torch.equal(table[identity], torch.arange(24))
    assert all(sorted(row.tolist()) == list(range(24)) for row in table)  # a Latin square
    assert not torch.equal(table, table.T)  # S4 is not abelian


def test_permutation_dataset_splits_every_pair_once() -> None:
    data = permutation_dataset(4, 0.4, data_seed=3)
    assert data.p == 24 and len(data.train_y) == round(0.4 * 576)
    pairs = torch.cat([data.train_x, data.test_x])
    assert len({tuple(r.tolist()) for r in pairs}) == 576
    table = composition_table(4)
    assert torch.equal(table[data.train_x[:, 0], data.train_x[:, 1]], data.train_y)
    with pytest.raises(ValueError, match="n must be"):
        permutation_dataset(6, 0.5, data_seed=0)


CONFIGS = {
    "mlp": RunConfig(p=23, d_emb=16, d_hidden=32, depth=2),
    "onehot": RunConfig(p=23, d_hidden=32, embedding=False),
    "transformer": TransformerConfig(p=23, d_model=16, n_heads=2, d_mlp=32),
    "transformer-2-ln": TransformerConfig(
        p=23, d_model=16, n_heads=2, d_mlp=32, n_layers=2, layernorm=True
    ),
    "digits": DigitsConfig(n_train=100, width=32, loss="ce"),
    "parity": ParityConfig(n_bits=16, k=3, n_train=64, n_test=32, width=32, depth=2),
    "perm": PermConfig(n=4, frac=0.5, d_emb=16, d_hidden=32),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_family_model_maps_its_inputs_to_class_logits(name: str) -> None:
    config = CONFIGS[name]
    torch.manual_seed(0)
    model, data, loss_fn = build(config)
    logits = model(data.train_x[:7])
    assert logits.shape == (7, data.p)
    assert loss_fn(logits, data.train_y[:7]).shape == (7,)
    assert int(data.train_y.max()) < data.p and len(data.test_y) > 0


def test_digits_loss_follows_the_config() -> None:
    assert loss_of(DigitsConfig()) is mse_one_hot
    assert loss_of(DigitsConfig(loss="ce")) is not mse_one_hot


def test_transformer_layernorm_gains_start_at_one() -> None:
    model, _, _ = build(CONFIGS["transformer-2-ln"])
    gains = [p for n, p in model.named_parameters() if "ln" in n and n.endswith("weight")]
    assert len(gains) == 5 and all(torch.equal(g, torch.ones_like(g)) for g in gains)


def test_v1_configs_keep_their_dicts_and_run_ids() -> None:
    # fields added for v2 are left out at their defaults: v1 runs keep their ids
    assert "n_layers" not in TransformerConfig().to_dict()
    assert "loss" not in DigitsConfig().to_dict()
    assert TransformerConfig(n_layers=2).to_dict()["n_layers"] == 2


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (ParityConfig, {"optimizer": "emb_lr10"}, "optimizer"),
        (ParityConfig, {"k": 40}, "k must be"),
        (PermConfig, {"n": 6}, "n must be"),
        (TransformerConfig, {"n_layers": 3}, "n_layers"),
        (DigitsConfig, {"loss": "hinge"}, "loss"),
        (PermConfig, {"optimizer": "lion"}, "optimizer"),
        (PermConfig, {"batch_size": -1}, "batch_size"),
    ],
)
def test_v2_configs_refuse_bad_values_by_name(cls: type, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_onehot_family_insists_on_no_embedding() -> None:
    with pytest.raises(ValueError, match="embedding=False"):
        FAMILIES["onehot"].check(RunConfig())
    FAMILIES["onehot"].check(RunConfig(embedding=False))
    assert math.factorial(4) == build(CONFIGS["perm"])[1].p
