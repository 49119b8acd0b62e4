"""The context's batched dropout forward, private generators, repr and runner edge cases."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest
import torch
from _probe_models import ModAddMLP, Setup, context, modadd_data, seeded
from torch import nn

from grokwatch.exceptions import ProbeNotApplicable
from grokwatch.probes import Layout, Probe, ProbeContext, run_probe
from grokwatch.probes.base import Value
from grokwatch.probes.circuit import CircuitComplexity
from grokwatch.probes.dropout import MCDropout


class Residual(nn.Module):
    """A skip connection from before the hidden layer: the shared-prefix path cannot be used."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 4)
        self.up = nn.Linear(8, 16)
        self.act = nn.ReLU()
        self.down = nn.Linear(16, 8)
        self.out = nn.Linear(8, 11)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embed(x).flatten(1)  # (N, 8)
        return self.out(e + self.down(self.act(self.up(e))))


def masked_logits_by_hand(model: nn.Module, x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(K, N, C) logits, one masked copy of the hidden module at a time."""
    out = []
    for mask in masks:
        handle = model.get_submodule(Layout.discover(model).hidden or "").register_forward_hook(
            lambda _m, _i, o, mask=mask: o * mask
        )
        with torch.no_grad():
            out.append(model(x))
        handle.remove()
    return torch.stack(out)


@pytest.mark.parametrize("factory", [ModAddMLP, Residual])
def test_batched_masks_equal_one_pass_per_mask(factory: type[nn.Module]) -> None:
    model = seeded(factory)
    _, (x, _) = modadd_data()
    ctx = ProbeContext(model, step=0, layout=Layout.discover(model))
    keep = torch.full((5, 32 if factory is ModAddMLP else 16), 0.6)
    masks = torch.bernoulli(keep, generator=torch.Generator().manual_seed(0)) / 0.6
    capture = ctx.forward(x, hidden_masks=masks)
    assert capture.logits.shape == (5, len(x), 11)
    assert capture.hidden is not None and capture.hidden.shape == (5 * len(x), masks.shape[1])
    torch.testing.assert_close(capture.logits, masked_logits_by_hand(model, x, masks))


def test_a_single_mask_still_gives_a_pass_axis() -> None:
    model = seeded(ModAddMLP)
    _, (x, _) = modadd_data()
    ctx = ProbeContext(model, step=0, layout=Layout.discover(model))
    assert ctx.forward(x, hidden_masks=torch.ones(1, 32)).logits.shape == (1, len(x), 11)


def test_masks_need_a_hidden_layer_that_runs() -> None:
    class Unused(ModAddMLP):
        def __init__(self) -> None:
            super().__init__()
            self.spare = nn.ReLU()  # discovered as the hidden layer, never called

    model = seeded(Unused)
    _, (x, _) = modadd_data()
    ctx = ProbeContext(model, step=0, layout=Layout.discover(model))
    assert ctx.layout.hidden == "spare"
    with pytest.raises(ProbeNotApplicable, match="not called"):
        ctx.forward(x, hidden_masks=torch.ones(3, 32))
    no_hidden = ProbeContext(model, step=0, layout=Layout(embedding=None, hidden=None, output=None))
    with pytest.raises(ProbeNotApplicable, match="hidden"):
        no_hidden.forward(x, hidden_masks=torch.ones(3, 32))


def test_generators_are_private_per_stream_and_step() -> None:
    model = seeded(ModAddMLP)

    def draw(step: int, stream: str, seed: int = 0) -> torch.Tensor:
        ctx = ProbeContext(model, step=step, layout=Layout.discover(model), generator_seed=seed)
        return torch.rand(4, generator=ctx.generator(stream=stream))

    assert torch.equal(draw(3, "a"), draw(3, "a"))
    assert not torch.equal(draw(3, "a"), draw(3, "b"))
    assert not torch.equal(draw(3, "a"), draw(4, "a"))
    assert not torch.equal(draw(3, "a"), draw(3, "a", seed=1))
    ctx = ProbeContext(model, step=3, layout=Layout.discover(model))
    torch.rand(10, generator=ctx.generator(stream="b"))  # another stream moves first
    assert torch.equal(torch.rand(4, generator=ctx.generator(stream="a")), draw(3, "a"))


def test_repr_shows_the_options() -> None:
    assert repr(MCDropout(passes=8)) == "MCDropout(passes=8, rate=0.3)"
    assert repr(CircuitComplexity(layer="w")) == "CircuitComplexity(fraction=0.1, layer='w')"


class _Odd(Probe):
    name = "odd"

    def __init__(self, value: object) -> None:
        self._value = value

    def compute(self, ctx: ProbeContext) -> Mapping[str, Value]:
        assert not torch.is_grad_enabled()  # the runner measures under no_grad
        return {"odd": self._value}  # type: ignore[dict-item]


def test_runner_turns_unreadable_values_into_errors(setup: Setup) -> None:
    ctx = context(setup.model, setup.train, setup.test)
    assert run_probe(_Odd(0.5), ctx).status == "ok"
    broken = run_probe(_Odd(torch.ones(3)), ctx)
    assert broken.status == "error"
    assert broken.reason
    assert run_probe(_Odd(np.ones(2)), ctx).arrays["odd"].shape == (2,)
