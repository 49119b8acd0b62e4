"""Hand-computed values of weight_norm, weight_entropy, grad_weight_cosine, circuit_complexity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _probe_models import ModAddMLP, context, modadd_data, seeded
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

from grokwatch.exceptions import ConfigError
from grokwatch.probes import Layout, ProbeContext, run_probe
from grokwatch.probes.circuit import CircuitComplexity, softmax_kl
from grokwatch.probes.weights import (
    GradWeightCosine,
    WeightEntropy,
    WeightNorm,
    absolute_entropy,
)


def linear(weight: list[list[float]], bias: list[float] | None) -> nn.Linear:
    w = torch.tensor(weight)
    layer = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(w)
        if bias is not None:
            layer.bias.copy_(torch.tensor(bias))
    return layer


def bare(model: nn.Module, **kw) -> ProbeContext:  # type: ignore[no-untyped-def]
    return ProbeContext(model, step=3, layout=Layout.discover(model), **kw)


# -- weight_norm --------------------------------------------------------------------------------


def test_weight_norm_total_and_per_parameter() -> None:
    model = nn.Sequential(linear([[3.0, 0.0], [0.0, 0.0]], [0.0, 4.0]))
    out = run_probe(WeightNorm(), bare(model)).values
    assert out == {"weight_norm": 5.0, "weight_norm/0.weight": 3.0, "weight_norm/0.bias": 4.0}


def test_weight_norm_without_parameters_is_not_applicable() -> None:
    assert run_probe(WeightNorm(), bare(nn.ReLU())).status == "not_applicable"


# -- weight_entropy -----------------------------------------------------------------------------


def test_weight_entropy_of_a_two_by_two_matrix() -> None:
    # -(.5 ln .5 + .25 ln .25 + 0 ln 0 + 1 ln 1) = .5 ln 2 + .5 ln 2 = ln 2 (bias: not a matrix)
    first = linear([[0.5, -0.25], [0.0, 1.0]], [7.0, 7.0])
    second = linear([[math.e, 0.0]], None)  # -e ln e = -e
    out = run_probe(WeightEntropy(), bare(nn.Sequential(first, second))).values
    assert out["weight_entropy/0.weight"] == pytest.approx(math.log(2))
    assert out["weight_entropy/1.weight"] == pytest.approx(-math.e)
    assert out["weight_entropy"] == pytest.approx(math.log(2) - math.e)
    assert set(out) == {"weight_entropy", "weight_entropy/0.weight", "weight_entropy/1.weight"}


def test_weight_entropy_without_matrices_is_not_applicable() -> None:
    model = nn.Sequential(nn.LayerNorm(3))
    assert run_probe(WeightEntropy(), bare(model)).status == "not_applicable"


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, (3, 5), elements=st.floats(-10, 10)), st.randoms(use_true_random=False))
def test_absolute_entropy_ignores_order_and_sign(w: np.ndarray, rnd) -> None:  # type: ignore[no-untyped-def]
    flat = list(w.ravel())
    rnd.shuffle(flat)
    shuffled = torch.tensor([x * rnd.choice([-1.0, 1.0]) for x in flat]).reshape(5, 3)
    expected = -sum(abs(x) * math.log(abs(x)) for x in w.ravel() if x != 0)
    assert absolute_entropy(torch.from_numpy(w)).item() == pytest.approx(expected, abs=1e-9)
    assert absolute_entropy(shuffled).item() == pytest.approx(expected, abs=1e-9)


# -- grad_weight_cosine -------------------------------------------------------------------------


def test_grad_weight_cosine_uses_the_descent_direction() -> None:
    model = nn.Sequential(linear([[1.0, 0.0]], None), linear([[5.0]], None))
    model[0].weight.grad = torch.tensor([[-1.0, -1.0]])  # model[1] has no grad: left out
    # -g = (1, 1), w = (1, 0): cosine 1 / sqrt(2)
    value = run_probe(GradWeightCosine(), bare(model)).values["grad_weight_cosine"]
    assert value == pytest.approx(1 / math.sqrt(2))
    model[0].weight.grad = torch.tensor([[2.0, 0.0]])  # a step that shrinks the weights
    assert run_probe(GradWeightCosine(), bare(model)).values["grad_weight_cosine"] == -1.0


def test_grad_weight_cosine_needs_nonzero_gradients() -> None:
    model = nn.Sequential(linear([[1.0, 0.0]], None))
    assert run_probe(GradWeightCosine(), bare(model)).status == "not_applicable"
    model[0].weight.grad = torch.zeros(1, 2)
    result = run_probe(GradWeightCosine(), bare(model))
    assert result.status == "not_applicable"
    assert "zero" in result.reason


# -- circuit_complexity -------------------------------------------------------------------------


def small_mlp() -> nn.Sequential:
    return nn.Sequential(
        linear([[1.0, -1.0], [0.5, 2.0], [-1.0, 0.3]], [0.1, -0.2, 0.3]),
        nn.ReLU(),
        linear([[1.0, 2.0, -1.0], [0.0, -1.0, 2.0]], [0.5, -0.5]),
    )


X = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [0.3, -2.0]])
Y = torch.tensor([0, 1, 1])


def test_circuit_complexity_is_zero_without_perturbation() -> None:
    out = run_probe(CircuitComplexity(fraction=0.0), bare(small_mlp(), test=(X, Y))).values
    assert out["circuit_complexity"] == pytest.approx(0.0, abs=1e-12)
    assert out["circuit_complexity_mean"] == pytest.approx(0.0, abs=1e-12)


def numpy_kl(p_logits: np.ndarray, q_logits: np.ndarray) -> np.ndarray:
    def log_softmax(z: np.ndarray) -> np.ndarray:
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    lp, lq = log_softmax(p_logits), log_softmax(q_logits)
    return (np.exp(lp) * (lp - lq)).sum(-1)


def test_circuit_complexity_with_the_whole_first_layer_zeroed() -> None:
    model = small_mlp()
    w1, b1 = model[0].weight.detach().double().numpy(), model[0].bias.detach().double().numpy()
    w2, b2 = model[2].weight.detach().double().numpy(), model[2].bias.detach().double().numpy()
    x = X.double().numpy()
    base = np.maximum(x @ w1.T + b1, 0) @ w2.T + b2
    knocked = np.maximum(b1, 0) @ w2.T + b2  # W1 = 0: the same output for every input
    kl = numpy_kl(base, np.broadcast_to(knocked, base.shape))
    out = run_probe(CircuitComplexity(fraction=1.0), bare(model, train=(X, Y))).values
    assert out["circuit_complexity"] == pytest.approx(kl.sum(), rel=1e-5)
    assert out["circuit_complexity_mean"] == pytest.approx(kl.mean(), rel=1e-5)
    assert torch.equal(model[0].weight, torch.from_numpy(w1).float())  # never written to


def test_circuit_complexity_layer_option_and_randomness() -> None:
    model = small_mlp()
    default = run_probe(CircuitComplexity(fraction=0.5), bare(model, test=(X, Y))).values
    named = run_probe(CircuitComplexity(fraction=0.5, layer="0.weight"), bare(model, test=(X, Y)))
    assert named.values == default
    other = run_probe(CircuitComplexity(fraction=0.5, layer="2.weight"), bare(model, test=(X, Y)))
    assert other.status == "ok"
    assert other.values != default


def test_circuit_complexity_draws_depend_on_the_step() -> None:
    model = seeded(ModAddMLP)
    train, test = modadd_data()
    values = {
        run_probe(CircuitComplexity(), context(model, train, test, step=s)).values[
            "circuit_complexity"
        ]
        for s in range(4)
    }
    assert len(values) == 4


def test_circuit_complexity_unknown_layer_is_a_reported_config_error() -> None:
    result = run_probe(CircuitComplexity(layer="nope.weight"), bare(small_mlp(), test=(X, Y)))
    assert result.status == "error"
    assert "ConfigError" in result.reason and "0.weight" in result.reason


@pytest.mark.parametrize(
    "kwargs", [{"fraction": -0.1}, {"fraction": 1.5}, {"fraction": True}, {"layer": ""}]
)
def test_circuit_complexity_rejects_bad_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        CircuitComplexity(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=30, deadline=None)
@given(
    arrays(np.float64, (4, 5), elements=st.floats(-30, 30)),
    arrays(np.float64, (4, 5), elements=st.floats(-30, 30)),
)
def test_softmax_kl_is_non_negative_and_zero_on_itself(p: np.ndarray, q: np.ndarray) -> None:
    kl = softmax_kl(torch.from_numpy(p), torch.from_numpy(q))
    assert (kl >= -1e-12).all()
    assert torch.allclose(kl, torch.from_numpy(numpy_kl(p, q)), atol=1e-9)
    assert softmax_kl(torch.from_numpy(p), torch.from_numpy(p)).abs().max() <= 1e-12
