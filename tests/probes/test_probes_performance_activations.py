"""Hand-computed values: loss_accuracy, activation_sparsity, spectral_entropy, softmax_collapse."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

from grokwatch.exceptions import ConfigError
from grokwatch.probes import Layout, ProbeContext, run_probe
from grokwatch.probes.activations import (
    ActivationSparsity,
    SoftmaxCollapse,
    SpectralEntropy,
    spectral_entropy,
)
from grokwatch.probes.performance import LossAccuracy


def identity_model(width: int) -> nn.Module:
    """A linear map that returns its input: the inputs *are* the logits (or features)."""
    layer = nn.Linear(width, width, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(width))
    return nn.Sequential(layer)


def ctx_for(model: nn.Module, train=None, test=None, **kw) -> ProbeContext:  # type: ignore[no-untyped-def]
    return ProbeContext(model, step=0, layout=Layout.discover(model), train=train, test=test, **kw)


def numpy_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return -log_softmax[np.arange(len(targets)), targets]


# -- loss_accuracy ------------------------------------------------------------------------------

LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0], [1.0, 1.5, 0.0], [0.0, 0.0, 5.0]])
TARGETS = torch.tensor([0, 1, 0, 1])


def test_loss_accuracy_matches_numpy_on_both_splits() -> None:
    test_logits, test_targets = LOGITS[:2] * 2, torch.tensor([2, 1])
    ctx = ctx_for(identity_model(3), train=(LOGITS, TARGETS), test=(test_logits, test_targets))
    out = run_probe(LossAccuracy(), ctx)
    assert out.status == "ok"
    assert out.values["train_accuracy"] == 0.5  # rows 0 and 1 right, rows 2 and 3 wrong
    assert out.values["test_accuracy"] == 0.5
    expected = numpy_cross_entropy(LOGITS.numpy().astype(np.float64), TARGETS.numpy()).mean()
    assert out.values["train_loss"] == pytest.approx(expected, rel=1e-6)
    expected = numpy_cross_entropy(test_logits.numpy().astype(np.float64), np.array([2, 1]))
    assert out.values["test_loss"] == pytest.approx(expected.mean(), rel=1e-6)


def test_loss_accuracy_reports_only_present_splits_and_uses_the_loss_fn() -> None:
    def squared_error(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (logits - nn.functional.one_hot(targets, logits.shape[-1])).square().sum(-1)

    ctx = ctx_for(identity_model(3), test=(LOGITS, TARGETS), loss_fn=squared_error)
    out = run_probe(LossAccuracy(), ctx)
    assert set(out.values) == {"test_loss", "test_accuracy"}
    onehot = np.eye(3)[TARGETS.numpy()]
    assert out.values["test_loss"] == pytest.approx(((LOGITS.numpy() - onehot) ** 2).sum(1).mean())


def test_loss_accuracy_one_hot_targets_count_their_argmax() -> None:
    onehot = nn.functional.one_hot(TARGETS, 3).float()
    ctx = ctx_for(identity_model(3), train=(LOGITS, onehot), loss_fn=lambda z, t: (z - t).sum(-1))
    assert run_probe(LossAccuracy(), ctx).values["train_accuracy"] == 0.5


def test_loss_accuracy_without_data_is_not_applicable() -> None:
    assert run_probe(LossAccuracy(), ctx_for(identity_model(3))).status == "not_applicable"


# -- activation_sparsity ------------------------------------------------------------------------


def relu_probe_model() -> nn.Module:
    """x -> identity Linear -> ReLU -> Linear: the hidden activations are relu(x)."""
    first = nn.Linear(3, 3)
    with torch.no_grad():
        first.weight.copy_(torch.eye(3))
        first.bias.zero_()
    return nn.Sequential(first, nn.ReLU(), nn.Linear(3, 2))


def test_activation_sparsity_by_hand() -> None:
    x = torch.tensor([[0.05, 0.0, 2.0], [-1.0, -3.0, 0.5]])  # relu: [[.05, 0, 2], [0, 0, .5]]
    other = torch.ones(4, 3)  # the train set: ignored while a test set is given
    ctx = ctx_for(
        relu_probe_model(),
        train=(other, torch.zeros(4, dtype=torch.long)),
        test=(x, torch.zeros(2)),
    )
    out = run_probe(ActivationSparsity(), ctx).values
    assert out["activation_sparsity"] == pytest.approx(4 / 6)  # .05, 0, 0, 0
    assert out["activation_zero_fraction"] == pytest.approx(3 / 6)
    assert out["inactive_neurons"] == pytest.approx(1 / 3)  # unit 1 is 0 on both inputs
    wide = run_probe(ActivationSparsity(threshold=1.0), ctx).values
    assert wide["activation_sparsity"] == pytest.approx(5 / 6)


def test_activation_sparsity_falls_back_to_train() -> None:
    x = torch.tensor([[1.0, 1.0, -1.0]])
    ctx = ctx_for(relu_probe_model(), train=(x, torch.zeros(1, dtype=torch.long)))
    assert run_probe(ActivationSparsity(), ctx).values["inactive_neurons"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("bad", [0, -0.1, math.inf, math.nan, True, "0.1", None])
def test_activation_sparsity_rejects_bad_threshold(bad: object) -> None:
    with pytest.raises(ConfigError, match="threshold"):
        ActivationSparsity(threshold=bad)  # type: ignore[arg-type]


# -- spectral_entropy ---------------------------------------------------------------------------


def numpy_spectral_entropy(x: np.ndarray) -> float:
    eig = np.clip(np.linalg.eigvalsh(np.cov(x, rowvar=False)), 0, None)
    share = eig / eig.sum()
    share = share[share > 0]
    return float(-(share * np.log(share)).sum() / np.log(x.shape[1]))


def test_spectral_entropy_matches_numpy_on_the_penultimate_train_features() -> None:
    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(1)) * torch.arange(1.0, 7.0)
    ctx = ctx_for(identity_model(6), train=(x, torch.zeros(200, dtype=torch.long)))
    value = run_probe(SpectralEntropy(), ctx).values["spectral_entropy"]
    assert value == pytest.approx(numpy_spectral_entropy(x.numpy().astype(np.float64)), abs=1e-6)


def test_spectral_entropy_extremes() -> None:
    plus_minus = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert spectral_entropy(plus_minus).item() == pytest.approx(1.0)  # covariance ∝ identity
    line = torch.arange(10.0)[:, None] * torch.tensor([[1.0, 2.0, -1.0]])
    assert spectral_entropy(line).item() == pytest.approx(0.0, abs=1e-6)  # rank one
    assert math.isnan(spectral_entropy(torch.ones(5, 3)).item())  # no variance at all
    assert math.isnan(spectral_entropy(torch.full((7, 3), 1.1)).item())  # only rounding noise
    assert math.isnan(spectral_entropy(torch.zeros(5, 3)).item())
    assert math.isnan(spectral_entropy(torch.full((5, 3), math.nan)).item())


def test_spectral_entropy_of_a_constant_representation_is_non_finite() -> None:
    x = torch.ones(5, 3)
    result = run_probe(SpectralEntropy(), ctx_for(identity_model(3), train=(x, torch.zeros(5))))
    assert result.status == "non_finite"


@settings(max_examples=30, deadline=None)
@given(
    arrays(np.float64, (12, 4), elements=st.floats(-100, 100, allow_subnormal=False)),
    st.permutations(range(4)),
)
def test_spectral_entropy_is_in_unit_interval_and_feature_order_free(
    x: np.ndarray, order: list[int]
) -> None:
    features = torch.from_numpy(x)
    value = spectral_entropy(features).item()
    if not math.isnan(value):
        assert -1e-9 <= value <= 1 + 1e-9
        permuted = spectral_entropy(features[:, order]).item()
        assert permuted == pytest.approx(value, abs=1e-4)


# -- softmax_collapse ---------------------------------------------------------------------------


def test_softmax_collapse_counts_exact_float32_zero_losses() -> None:
    logits = torch.tensor([[100.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 200.0, 0.0], [0, 0, 30.0]])
    targets = torch.tensor([0, 0, 0, 2])
    ctx = ctx_for(identity_model(3), train=(logits, targets))
    # rows 0 and 3: 1 + 2 exp(-100) and 1 + 2 exp(-30) round to 1 in float32 (loss exactly 0);
    # row 1 is right but not collapsed; row 2 is wrong
    assert run_probe(SoftmaxCollapse(), ctx).values["softmax_collapse"] == 0.5


def test_softmax_collapse_needs_class_indices_and_train_data() -> None:
    model = identity_model(3)
    assert run_probe(SoftmaxCollapse(), ctx_for(model)).status == "not_applicable"
    soft = ctx_for(model, train=(LOGITS, torch.softmax(LOGITS, -1)))
    assert run_probe(SoftmaxCollapse(), soft).status == "not_applicable"
