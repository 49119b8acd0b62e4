"""MC dropout and the dropout robustness curve, checked against a mask-by-mask recomputation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _probe_models import ModAddMLP, Setup, context, modadd_data, seeded
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from grokwatch.exceptions import ConfigError
from grokwatch.probes import run_probe, run_probes
from grokwatch.probes.circuit import CircuitComplexity
from grokwatch.probes.dropout import (
    ROBUSTNESS_RATES,
    DropoutRobustness,
    MCDropout,
    keep_masks,
)
from grokwatch.probes.performance import LossAccuracy


def accuracy_per_mask(model: ModAddMLP, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor):  # type: ignore[no-untyped-def]
    """Sub-network by sub-network, without the batched forward."""
    first, act, last = model.mlp
    with torch.no_grad():
        hidden = act(first(model.embed(x).flatten(1)))  # (N, H)
        return np.array([(last(hidden * m).argmax(-1) == y).double().mean().item() for m in masks])


def test_mc_dropout_matches_a_mask_by_mask_recomputation(setup: Setup) -> None:
    probe = MCDropout(passes=6, rate=0.5)
    out = run_probe(probe, context(setup.model, setup.train, setup.test, step=11)).values
    fresh = context(setup.model, setup.train, setup.test, step=11)
    masks = keep_masks(torch.full((6,), 0.5), 32, fresh.generator(stream="mc_dropout"))
    assert set(masks.unique().tolist()) == {0.0, 2.0}
    acc = accuracy_per_mask(setup.model, *setup.test, masks)
    assert acc.std() > 0  # the masks really differ
    assert out["mc_dropout_accuracy_mean"] == pytest.approx(acc.mean(), abs=1e-6)
    assert out["mc_dropout_accuracy_var"] == pytest.approx(acc.var(), abs=1e-6)


def test_mc_dropout_at_rate_zero_has_no_variance(setup: Setup) -> None:
    ctx = context(setup.model, setup.train, setup.test)
    out = run_probe(MCDropout(rate=0.0), ctx).values
    assert out["mc_dropout_accuracy_var"] == 0.0
    assert out["mc_dropout_accuracy_mean"] == pytest.approx(
        run_probe(LossAccuracy(), ctx).values["test_accuracy"]
    )


def test_mc_dropout_masks_do_not_depend_on_other_probes(setup: Setup) -> None:
    alone = run_probe(MCDropout(), context(setup.model, setup.train, setup.test))
    ctx = context(setup.model, setup.train, setup.test)
    after = run_probes([CircuitComplexity(), DropoutRobustness(), MCDropout()], ctx)[-1]
    assert after.values == alone.values


@pytest.mark.parametrize(
    "kwargs",
    [{"passes": 1}, {"passes": 2.5}, {"passes": True}, {"rate": 1.0}, {"rate": -0.1}],
)
def test_mc_dropout_rejects_bad_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        MCDropout(**kwargs)  # type: ignore[arg-type]


def test_dropout_robustness_curve(setup: Setup) -> None:
    ctx = context(setup.model, setup.train, setup.test, step=4)
    result = run_probe(DropoutRobustness(passes=3), ctx)
    curve = result.arrays["dropout_robustness_curve"]
    np.testing.assert_array_equal(result.arrays["dropout_robustness_rates"], ROBUSTNESS_RATES)
    assert curve.shape == (10,)
    test_accuracy = run_probe(LossAccuracy(), ctx).values["test_accuracy"]
    assert curve[0] == pytest.approx(test_accuracy)  # rate 0: the model itself, three times
    assert result.values["dropout_robustness_auc"] == pytest.approx(curve.mean())

    fresh = context(setup.model, setup.train, setup.test, step=4)
    rates = torch.tensor(ROBUSTNESS_RATES).repeat_interleave(3)
    masks = keep_masks(rates, 32, fresh.generator(stream="dropout_robustness"))
    expected = accuracy_per_mask(setup.model, *setup.test, masks).reshape(10, 3).mean(1)
    np.testing.assert_allclose(curve, expected, atol=1e-6)

    plain = run_probe(DropoutRobustness(passes=3), context(*_args(setup), step=4, snapshot=False))
    assert plain.values == result.values and not plain.arrays


def _args(setup: Setup) -> tuple[nn.Module, object, object]:
    return setup.model, setup.train, setup.test


def test_dropout_robustness_is_flat_when_the_hidden_layer_is_silent() -> None:
    model = seeded(ModAddMLP)
    with torch.no_grad():
        model.mlp[0].weight.zero_()
        model.mlp[0].bias.fill_(-1.0)  # ReLU output is 0 for every input: dropout changes nothing
    train, test = modadd_data()
    result = run_probe(DropoutRobustness(), context(model, train, test))
    curve = result.arrays["dropout_robustness_curve"]
    assert np.all(curve == curve[0])


def test_dropout_robustness_rejects_bad_passes() -> None:
    with pytest.raises(ConfigError, match="passes"):
        DropoutRobustness(passes=0)
    assert DropoutRobustness.period == 10


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 0.95), min_size=1, max_size=6), st.integers(0, 2**31))
def test_keep_masks_are_inverted_bernoulli(rates: list[float], seed: int) -> None:
    r = torch.tensor(rates, dtype=torch.float32)
    masks = keep_masks(r, 64, torch.Generator().manual_seed(seed))
    assert masks.shape == (len(rates), 64)
    scale = 1.0 / (1.0 - r)
    kept = masks != 0
    assert torch.equal(masks[kept], scale[:, None].expand(-1, 64)[kept])
    assert torch.equal(masks[r == 0], torch.ones_like(masks[r == 0]))
