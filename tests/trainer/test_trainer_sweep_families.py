"""The evaluation-only families: the transformer's last-position shortcut is exact, the
digits data come from scikit-learn's bundled copy, configs refuse bad values by name."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainer.families import (
    DIGITS_IMAGES,
    FAMILIES,
    DigitsConfig,
    DigitsMLP,
    Transformer,
    TransformerConfig,
    digits_dataset,
    mse_one_hot,
    train_family,
)


def full_sequence_reference(model: Transformer, x: torch.Tensor) -> torch.Tensor:
    """The textbook 1-layer transformer: every position computed, causal mask, read at '='."""
    n, h = x.shape[0], model.n_heads
    tokens = torch.cat([x, torch.full((n, 1), model.p)], dim=1)  # (N, 3)
    resid = model.embed(tokens) + model.pos.weight  # (N, 3, d)
    q, k, v = model.qkv(resid).chunk(3, dim=-1)
    dh = q.shape[-1] // h
    q, k, v = (t.reshape(n, 3, h, dh).transpose(1, 2) for t in (q, k, v))  # (N, h, 3, dh)
    scores = q @ k.transpose(-1, -2) / math.sqrt(dh)  # (N, h, 3, 3)
    scores = scores.masked_fill(torch.ones(3, 3, dtype=torch.bool).triu(1), -math.inf)
    att = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, 3, -1)  # (N, 3, d)
    resid = resid + model.attn_out(att)
    resid = resid + model.mlp_out(F.relu(model.mlp_in(resid)))
    return model.out(resid)[:, -1]  # (N, p)


def test_transformer_last_position_shortcut_is_exact() -> None:
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(p=11, d_model=16, n_heads=4, d_mlp=32, init_scale=2.0))
    x = torch.randint(0, 11, (64, 2))
    torch.testing.assert_close(model(x), full_sequence_reference(model, x))


def test_digits_split_model_and_loss() -> None:
    data = digits_dataset(150, data_seed=1)
    assert data.train_x.shape == (150, 64) and data.test_x.shape == (DIGITS_IMAGES - 150, 64)
    assert float(data.train_x.max()) <= 1.0 and set(data.train_y.tolist()) <= set(range(10))
    same = digits_dataset(150, data_seed=1)
    assert torch.equal(same.train_y, data.train_y)  # the split depends on data_seed alone
    model = DigitsMLP(DigitsConfig(width=8, depth=2, init_scale=8.0))
    assert [n for n, m in model.named_modules() if isinstance(m, torch.nn.ReLU)][-1] == "act"
    logits = torch.zeros(3, 10)
    assert mse_one_hot(logits, torch.tensor([0, 1, 2])).tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("cls", "changes", "named"),
    [
        (TransformerConfig, {"p": 9, "op": "div"}, "p"),
        (TransformerConfig, {"frac": 1.0}, "frac"),
        (TransformerConfig, {"d_model": 30, "n_heads": 4}, "n_heads"),
        (TransformerConfig, {"lr": 0}, "lr"),
        (DigitsConfig, {"n_train": 1797}, "n_train"),
        (DigitsConfig, {"depth": 4}, "depth"),
        (DigitsConfig, {"init_scale": True}, "init_scale"),
        (DigitsConfig, {"width": 1.5}, "width"),
    ],
)
def test_family_configs_refuse_bad_values(cls: type, changes: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        cls(**changes)
    with pytest.raises(ValueError, match="unknown"):
        cls.from_dict({"colour": 1})


def test_family_configs_round_trip_and_training_is_deterministic() -> None:
    config = TransformerConfig(p=7, frac=0.6, d_model=8, n_heads=2, d_mlp=16, steps=20)
    assert TransformerConfig.from_dict(config.to_dict()) == config
    a, b = train_family(config), train_family(config)
    assert a.history == b.history and a.steps == 20
    assert {f.role for f in FAMILIES.values()} == {"train", "eval"}
    assert FAMILIES["digits"].modulus(DigitsConfig()) is None
