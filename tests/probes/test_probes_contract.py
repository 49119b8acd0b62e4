"""The probe contract, checked on every registered probe.

Measuring has no side effects (parameters, gradients, optimizer state, module modes and the
global RNG streams are exactly as before), every probe works on the seed-000 model, and a model
or data set that lacks what a probe needs gives ``not_applicable``, never ``error``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numpy as np
import pytest
import torch
from _probe_models import (
    ModAddMLP,
    NoActivationMLP,
    NoLinearMLP,
    OneHotMLP,
    Setup,
    context,
    modadd_data,
    one_hot_pairs,
    seeded,
    train_one_step,
)

from grokwatch.probes import BUILTIN, ProbeContext, run_probe, run_probes

NAMES = list(BUILTIN)


def test_builtin_order_starts_with_performance() -> None:
    assert NAMES[0] == "loss_accuracy"


def test_every_probe_class_of_the_package_is_registered_under_its_name() -> None:
    """Found by walking the package's modules, so a new probe cannot be left out."""
    import importlib
    import inspect
    import pkgutil

    import grokwatch.probes as package
    from grokwatch.probes import Probe

    defined = {}
    for info in pkgutil.iter_modules(package.__path__, prefix="grokwatch.probes."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            ours = issubclass(cls, Probe) and cls.__module__ == module.__name__
            if ours and isinstance(getattr(cls, "name", None), str):
                defined[cls.name] = cls
    assert len(defined) >= 10
    assert {name: defined[name] for name in BUILTIN} == BUILTIN
    assert set(BUILTIN) == set(defined)


def _optimizer_tensors(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [
        v.clone()
        for state in opt.state.values()
        for _, v in sorted(state.items())
        if isinstance(v, torch.Tensor)
    ]


def _numpy_state_equal(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2:] == b[2:]  # type: ignore[arg-type]


@pytest.mark.parametrize("name", NAMES)
def test_probe_has_no_side_effects(name: str, setup: Setup) -> None:
    model, opt = setup.model, setup.optimizer
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    state = _optimizer_tensors(opt)
    modes = [m.training for m in model.modules()]
    assert any(modes) and not all(modes)
    torch_rng, numpy_rng, python_rng = (
        torch.get_rng_state(),
        np.random.get_state(),
        random.getstate(),
    )

    result = run_probe(BUILTIN[name](), context(model, setup.train, setup.test))

    assert result.status == "ok", result.reason
    assert torch.equal(torch.get_rng_state(), torch_rng)
    assert _numpy_state_equal(np.random.get_state(), numpy_rng)
    assert random.getstate() == python_rng
    assert [m.training for m in model.modules()] == modes
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), params[n]), n
        assert p.grad is not None
        assert torch.equal(p.grad, grads[n]), n
        assert p.requires_grad == flags[n]
    after = _optimizer_tensors(opt)
    assert len(after) == len(state)
    assert all(torch.equal(a, b) for a, b in zip(after, state, strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_probe_returns_floats_and_arrays_only_in_snapshots(name: str, setup: Setup) -> None:
    probe = BUILTIN[name]()
    plain = probe.compute(context(setup.model, setup.train, setup.test, snapshot=False))
    assert plain
    assert all(type(v) is float for v in plain.values()), plain
    snap = run_probe(probe, context(setup.model, setup.train, setup.test, snapshot=True))
    assert set(snap.values) == set(plain)
    assert all(isinstance(v, np.ndarray) for v in snap.arrays.values())


@pytest.mark.parametrize("name", NAMES)
def test_probe_is_deterministic_for_a_step(name: str, setup: Setup) -> None:
    first = run_probe(BUILTIN[name](), context(setup.model, setup.train, setup.test))
    again = run_probe(BUILTIN[name](), context(setup.model, setup.train, setup.test))
    assert first.values == again.values
    assert first.arrays.keys() == again.arrays.keys()
    assert all(np.array_equal(first.arrays[k], again.arrays[k]) for k in first.arrays)


def test_keys_are_unique_across_probes(setup: Setup) -> None:
    seen: dict[str, str] = {}
    ctx = context(setup.model, setup.train, setup.test)
    for result in run_probes([cls() for cls in BUILTIN.values()], ctx):
        for key in [*result.values, *result.arrays]:
            assert key not in seen, f"{key} from {result.probe} and {seen[key]}"
            seen[key] = result.probe


def _trained(factory: Callable[[], torch.nn.Module], one_hot: bool = False) -> ProbeContext:
    train, test = modadd_data()
    if one_hot:
        train, test = one_hot_pairs(train), one_hot_pairs(test)
    model = seeded(factory)
    train_one_step(model, train)
    return context(model, train, test)


def _no_data() -> ProbeContext:
    train, _ = modadd_data()
    model = seeded(ModAddMLP)
    train_one_step(model, train)
    return context(model, None, None, losses=())


def _train_only() -> ProbeContext:
    train, _ = modadd_data()
    model = seeded(ModAddMLP)
    train_one_step(model, train)
    return context(model, train, None)


def _no_grad() -> ProbeContext:
    return context(seeded(ModAddMLP), *modadd_data())


SCENARIOS: dict[str, tuple[Callable[[], ProbeContext], set[str]]] = {
    "no_embedding": (
        lambda: _trained(OneHotMLP, one_hot=True),
        {"embedding_structure", "embedding_bimodality", "fourier_sparsity"},
    ),
    "no_activation": (
        lambda: _trained(NoActivationMLP),
        {"activation_sparsity", "mc_dropout", "dropout_robustness"},
    ),
    "no_linear": (lambda: _trained(NoLinearMLP), {"spectral_entropy", "circuit_complexity"}),
    "no_data": (
        _no_data,
        {
            "loss_accuracy",
            "activation_sparsity",
            "spectral_entropy",
            "softmax_collapse",
            "circuit_complexity",
            "mc_dropout",
            "dropout_robustness",
            "loss_spectral_energy",
        },
    ),
    "train_only": (_train_only, {"mc_dropout", "dropout_robustness"}),
    "no_grad": (_no_grad, {"grad_weight_cosine"}),
}

#: the scenario that removes each ``Probe.requires`` entry
REMOVES = {
    "embedding": "no_embedding",
    "hidden": "no_activation",
    "output": "no_linear",
    "train": "no_data",
    "test": "train_only",
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("name", NAMES)
def test_missing_layer_or_data_is_not_applicable(name: str, scenario: str) -> None:
    make, expected_na = SCENARIOS[scenario]
    result = run_probe(BUILTIN[name](), make())
    if name in expected_na:
        assert result.status == "not_applicable", (result.status, result.reason)
        assert result.reason
        assert not result.values and not result.arrays
    else:
        assert result.status == "ok", result.reason


@pytest.mark.parametrize("name", NAMES)
def test_requires_matches_behaviour(name: str) -> None:
    for need in BUILTIN[name].requires:
        assert need in REMOVES, need
        assert name in SCENARIOS[REMOVES[need]][1], f"{name} requires {need} but works without"


@pytest.mark.parametrize("name", NAMES)
def test_nan_weights_are_reported_never_raised(name: str, setup: Setup) -> None:
    with torch.no_grad():
        for p in setup.model.parameters():
            p.fill_(math.nan)
    result = run_probe(BUILTIN[name](), context(setup.model, setup.train, setup.test))
    assert result.status in {"ok", "non_finite"}, result.reason
    if result.status == "non_finite":
        assert any(not math.isfinite(v) for v in result.values.values())


def test_nan_losses_are_non_finite(setup: Setup) -> None:
    ctx = context(setup.model, setup.train, setup.test, losses=[1.0] * 10 + [math.nan])
    assert run_probe(BUILTIN["loss_spectral_energy"](), ctx).status == "non_finite"
