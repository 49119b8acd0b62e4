"""RunConfig: validation names the bad key and value; JSON round trip gives an equal config."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from trainer.config import RunConfig


def test_defaults_are_the_seed_000_recipe() -> None:
    c = RunConfig()
    assert (c.p, c.op, c.frac, c.lr, c.wd) == (53, "add", 0.5, 1e-3, 1.0)
    assert (c.d_emb, c.d_hidden, c.betas, c.eval_every) == (128, 256, (0.9, 0.98), 100)


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"p": 1}, "p"),
        ({"p": 12, "op": "div"}, "p"),
        ({"op": "pow"}, "op"),
        ({"frac": 0.0}, "frac"),
        ({"frac": 1.0}, "frac"),
        ({"p": 3, "frac": 0.01}, "frac"),
        ({"lr": 0.0}, "lr"),
        ({"lr": -1e-3}, "lr"),
        ({"wd": -0.1}, "wd"),
        ({"wd": float("nan")}, "wd"),
        ({"steps": 0}, "steps"),
        ({"seed": -1}, "seed"),
        ({"data_seed": -1}, "data_seed"),
        ({"d_emb": 0}, "d_emb"),
        ({"d_hidden": -4}, "d_hidden"),
        ({"depth": 3}, "depth"),
        ({"init_scale": 0.0}, "init_scale"),
        ({"init_scale": float("inf")}, "init_scale"),
        ({"betas": (0.9, 1.0)}, "betas"),
        ({"betas": (0.9,)}, "betas"),
        ({"eval_every": 0}, "eval_every"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"optimizer": "emb_lr10", "embedding": False}, "optimizer"),
        ({"grokfast_alpha": 1.0}, "grokfast_alpha"),
        ({"grokfast_lamb": -1.0}, "grokfast_lamb"),
        ({"device": "tpu"}, "device"),
        ({"threads": 0}, "threads"),
        ({"p": 53.0}, "p"),
        ({"steps": True}, "steps"),
        ({"embedding": 1}, "embedding"),
        ({"lr": "1e-3"}, "lr"),
    ],
)
def test_validation_names_the_bad_key_and_value(changes: dict, key: str) -> None:
    with pytest.raises(ValueError, match=rf"\b{key}\b") as info:
        RunConfig(**changes)
    assert f"{key}=" in str(info.value)


def test_round_trip_through_dict_and_json(tmp_path: Path) -> None:
    c = RunConfig(p=31, op="div", frac=0.3, lr=3e-3, steps=123, optimizer="grokfast", threads=1)
    assert RunConfig.from_dict(c.to_dict()) == c
    written = c.save(tmp_path / "run" / "config.json")
    assert RunConfig.load(written) == c
    c.save(tmp_path)  # an existing directory → config.json inside it
    assert RunConfig.load(tmp_path) == c
    assert json.loads((tmp_path / "config.json").read_text())["betas"] == [0.9, 0.98]


def test_every_field_survives_json() -> None:
    c = RunConfig()
    d = json.loads(json.dumps(c.to_dict()))
    assert set(d) == {f.name for f in dataclasses.fields(RunConfig)}
    assert RunConfig.from_dict(d) == c


def test_from_dict_refuses_unknown_keys_by_name() -> None:
    d = RunConfig().to_dict() | {"learning_rate": 1e-3, "zeta": 1}
    with pytest.raises(ValueError, match=r"learning_rate.*zeta"):
        RunConfig.from_dict(d)


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().lr = 1.0  # type: ignore[misc]
