"""Approximate local circuit complexity: how much the output moves when weights are knocked out."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import torch
from torch import nn

from grokwatch.exceptions import ConfigError, ProbeNotApplicable
from grokwatch.probes.base import Probe, ProbeContext, Value
from grokwatch.probes.registry import register


def softmax_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """Per-row ``KL(softmax(p) || softmax(q))`` over the last axis, in float64 (no 0*inf NaNs)."""
    log_p = torch.log_softmax(logits_p.double(), dim=-1)
    log_q = torch.log_softmax(logits_q.double(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


@register
class CircuitComplexity(Probe):
    """KL divergence of the output after zeroing a random fraction of one layer's weights.

    ``circuit_complexity = sum_x KL(softmax(f_W(x)) || softmax(f_W'(x)))`` over the probe inputs
    (test set if given, else train), where ``W'`` is ``W`` with a random ``fraction`` (10 %) of the
    entries of one weight parameter set to 0; ``circuit_complexity_mean`` is the same per input.
    A model whose function rests on a few robust circuits moves little (Golechha 2024, arXiv
    2405.12755). The perturbed weights are evaluated with ``ctx.forward(params=...)``;
    the model itself is never written to. The zeroed entries come from the probe's private
    generator, so a given step always knocks out the same entries.

    Options: ``fraction`` in [0, 1]; ``layer``, the name of the parameter to perturb (as in
    ``model.named_parameters()``), by default the weight of the first ``nn.Linear``.
    """

    name = "circuit_complexity"

    def __init__(self, *, fraction: float = 0.1, layer: str | None = None) -> None:
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, int | float)
            or not 0.0 <= fraction <= 1.0
        ):
            raise ConfigError(f"fraction must be a number in [0, 1], got {fraction=}")
        if layer is not None and (not isinstance(layer, str) or not layer):
            raise ConfigError(f"layer must be a parameter name or None, got {layer=}")
        self.fraction = fraction
        self.layer = layer

    def _target(self, model: nn.Module) -> tuple[str, torch.Tensor]:
        params = dict(model.named_parameters(remove_duplicate=False))
        if self.layer is None:
            first = next(
                (n for n, m in model.named_modules() if isinstance(m, nn.Linear)),
                None,
            )
            if first is None:
                raise ProbeNotApplicable("the model has no nn.Linear layer to perturb")
            name = f"{first}.weight" if first else "weight"
        else:
            name = self.layer
            if name not in params:
                matrices = sorted(n for n, p in params.items() if p.dim() >= 2)
                raise ConfigError(
                    f"layer must name a parameter of the model, got {self.layer=}; "
                    f"weight parameters: {matrices[:20]}"
                )
        return name, params[name].detach()

    def compute(self, ctx: ProbeContext) -> Mapping[str, Value]:
        split: Literal["train", "test"] = "test" if ctx.test is not None else "train"
        if ctx.train is None and ctx.test is None:
            raise ProbeNotApplicable("no train or test data was given to the agent")
        x, _ = ctx.require(split)
        base = ctx.capture(split).logits
        name, weight = self._target(ctx.model)
        count = math.floor(self.fraction * weight.numel() + 0.5)
        gen = ctx.generator(weight.device, stream=self.name)
        dropped = torch.randperm(weight.numel(), generator=gen, device=weight.device)[:count]
        keep = torch.ones(weight.numel(), dtype=torch.bool, device=weight.device)
        keep[dropped] = False
        perturbed = torch.where(keep.reshape(weight.shape), weight, torch.zeros_like(weight))
        logits = ctx.forward(x, params={name: perturbed}).logits
        kl = softmax_kl(base, logits)  # (N,)
        total, mean = torch.stack([kl.sum(), kl.mean()]).tolist()  # sync
        return {"circuit_complexity": total, "circuit_complexity_mean": mean}
