"""Every probe on the model kinds people train, its values recomputed by hand.

For an MLP, a two-input MLP with a functional ReLU, a batch-first and a sequence-first transformer
(functional GELU), an LSTM and a small CNN, the agent finds the hidden layer and the logits'
layout by itself, and each probe's value equals a direct computation with our own hooks: one
forward per dropout pass instead of the agent's batched passes, a perturbed deep copy instead
of ``functional_call``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
from _zoo import CASES, Case, P
from torch import nn

from grokwatch import Agent, Limits
from grokwatch.probes import Layout, ProbeContext
from grokwatch.probes.activations import spectral_entropy
from grokwatch.probes.dropout import ROBUSTNESS_RATES, keep_masks


def call(case: Case, model: nn.Module, x: Any) -> torch.Tensor:
    """The model's (N, P) logits, read the way a user of each model would read them."""
    if case.name == "mlp_two_inputs":
        return model(*x)
    out = model(x)
    if case.name == "transformer_batch_first":
        return out[:, -1]
    if case.name == "transformer_sequence_first":
        return out[0][-1]
    return out


def hooked(case: Case, model: nn.Module, store: list, mask: torch.Tensor | None = None):
    """Record (and scale by ``mask`` along the feature axis) the case's hidden representation."""
    name, where, _ = case.hidden
    module = model.get_submodule(name)

    def scale(t: torch.Tensor) -> torch.Tensor:
        store.append(t)
        if mask is None:
            return t
        shape = [1] * t.dim()
        shape[1 if t.dim() >= 4 else -1] = -1
        return t * mask.reshape(shape)

    if where == "output":
        return module.register_forward_hook(lambda _m, _i, out: scale(out))
    return module.register_forward_pre_hook(lambda _m, args: (scale(args[0]), *args[1:]))


def rows(t: torch.Tensor) -> torch.Tensor:
    axis = 1 if t.dim() >= 4 else t.dim() - 1
    return t.movedim(axis, -1).reshape(-1, t.shape[axis])


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return (logits.argmax(-1) == y).double().mean().item()


def watched(case: Case):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = case.build()
    train, test = case.data()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):  # a few steps, so the model is not at its initialization
        opt.zero_grad()
        nn.functional.cross_entropy(call(case, model, train[0]), train[1]).backward()
        opt.step()
    agent = Agent(
        model,
        train=train,
        test=test,
        every=1,
        transport=None,
        modulus=None if case.name == "cnn" else P,
        limits=Limits(snapshot_every=1),
    )
    agent.step(0)
    return model, train, test, agent


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_probe_on_every_model_kind(case: Case) -> None:
    model, (xtr, ytr), (xte, yte), agent = watched(case)
    values = agent.history[-1][1]
    snapshot = agent.snapshots[0]
    layout = agent.layout
    assert (layout.hidden, layout.hidden_from, layout.hidden_axis) == case.hidden
    assert agent._call.output_axis == case.output_axis
    assert agent.errors == 0
    for name, result in agent.statuses.items():
        assert result.status in ("ok", "not_applicable"), (name, result.reason)
        assert result.status == "ok" or result.reason, name
    applicable = {n for n, r in agent.statuses.items() if r.status == "ok"}
    assert {
        "loss_accuracy",
        "activation_sparsity",
        "mc_dropout",
        "dropout_robustness",
    } <= applicable
    assert {"spectral_entropy", "circuit_complexity", "softmax_collapse"} <= applicable

    model.eval()
    with torch.no_grad():
        base_train, base_test = call(case, model, xtr), call(case, model, xte)
        ce = nn.functional.cross_entropy
        assert values["train_loss"] == pytest.approx(ce(base_train, ytr).item(), rel=1e-5)
        assert values["test_loss"] == pytest.approx(ce(base_test, yte).item(), rel=1e-5)
        assert values["train_accuracy"] == accuracy(base_train, ytr)
        assert values["test_accuracy"] == accuracy(base_test, yte)

        hidden: list[torch.Tensor] = []
        handle = hooked(case, model, hidden)
        call(case, model, xte)
        handle.remove()
        a = rows(hidden[-1])
        assert values["activation_sparsity"] == pytest.approx((a.abs() < 0.1).float().mean().item())
        assert values["activation_zero_fraction"] == pytest.approx((a == 0).float().mean().item())
        assert values["inactive_neurons"] == pytest.approx((a == 0).all(0).float().mean().item())

        penultimate: list[torch.Tensor] = []
        head = model.get_submodule(layout.output or "")
        handle = head.register_forward_pre_hook(lambda _m, args: penultimate.append(args[0]))
        call(case, model, xtr)
        handle.remove()
        feats = penultimate[-1]
        if feats.dim() == 3:  # read at the position the logits are read at
            feats = feats[:, -1] if case.output_axis == 0 else feats[-1]
        assert values["spectral_entropy"] == pytest.approx(spectral_entropy(feats).item())

        # the same masks the probes drew: a context of the same seed and step
        ctx = ProbeContext(model, step=0, layout=Layout(None, None, None))
        width = a.shape[-1]
        rates = torch.full((16,), 0.3)
        masks = keep_masks(rates, width, ctx.generator(stream="mc_dropout"))
        accs = []
        for mask in masks:
            handle = hooked(case, model, [], mask)
            accs.append(accuracy(call(case, model, xte), yte))
            handle.remove()
        mean = sum(accs) / len(accs)
        var = sum((v - mean) ** 2 for v in accs) / len(accs)
        assert values["mc_dropout_accuracy_mean"] == pytest.approx(mean, abs=1e-12)
        assert values["mc_dropout_accuracy_var"] == pytest.approx(var, abs=1e-12)

        per_pass = torch.tensor(ROBUSTNESS_RATES).repeat_interleave(4)
        masks = keep_masks(per_pass, width, ctx.generator(stream="dropout_robustness"))
        curve = []
        for mask in masks:
            handle = hooked(case, model, [], mask)
            curve.append(accuracy(call(case, model, xte), yte))
            handle.remove()
        curve = torch.tensor(curve, dtype=torch.float64).reshape(10, 4).mean(1)
        assert snapshot["dropout_robustness_curve"] == pytest.approx(curve.numpy(), abs=1e-12)
        assert snapshot["dropout_robustness_curve"][0] == values["test_accuracy"]

        first = next(n for n, m in model.named_modules() if isinstance(m, nn.Linear))
        weight = model.get_submodule(first).weight
        count = math.floor(0.1 * weight.numel() + 0.5)
        gen = ctx.generator(stream="circuit_complexity")
        dropped = torch.randperm(weight.numel(), generator=gen)[:count]
        knocked = copy.deepcopy(model)
        knocked.get_submodule(first).weight.view(-1)[dropped] = 0.0
        log_p = torch.log_softmax(base_test.double(), -1)
        log_q = torch.log_softmax(call(case, knocked, xte).double(), -1)
        kl = (log_p.exp() * (log_p - log_q)).sum(-1)
        assert values["circuit_complexity"] == pytest.approx(kl.sum().item(), rel=1e-6)
