"""Measures of the parameters alone: norm, absolute weight entropy, gradient alignment.

None of these needs data; they read ``ctx.model`` and never write to it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from grokwatch.exceptions import ProbeNotApplicable
from grokwatch.probes.base import Probe, ProbeContext, Value
from grokwatch.probes.registry import register


def absolute_entropy(weight: torch.Tensor) -> torch.Tensor:
    """``-sum(|w| log |w|)`` over every entry, natural log, with ``0 log 0 = 0``."""
    magnitude = weight.detach().abs()
    entropy: torch.Tensor = -torch.special.xlogy(magnitude, magnitude).sum()
    return entropy


def _moments(weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``[<g, w>, |g|^2, |w|^2]`` in float64."""
    w, g = weight.detach().double().flatten(), grad.detach().double().flatten()
    return torch.stack([torch.dot(g, w), torch.dot(g, g), torch.dot(w, w)])


@register
class WeightNorm(Probe):
    """L2 norm of the parameters: the classic (and hard to beat) grokking baseline.

    ``weight_norm`` is ``sqrt(sum of all squared parameters)``; ``weight_norm/<name>`` is the norm
    of each parameter. One independent benchmark found plain weight norm
    separates grokking from non-grokking runs with AUROC 0.98 (Wang 2026, arXiv 2605.08237).
    """

    name = "weight_norm"

    def compute(self, ctx: ProbeContext) -> Mapping[str, Value]:
        named = list(ctx.model.named_parameters())
        if not named:
            raise ProbeNotApplicable("the model has no parameters")
        device = named[0][1].device
        norms = torch.stack(
            [torch.linalg.vector_norm(p.detach().float()).to(device) for _, p in named]
        )
        total = norms.double().square().sum().sqrt()
        host = torch.cat([total[None], norms.double()]).tolist()  # sync
        out: dict[str, Value] = {"weight_norm": host[0]}
        out.update({f"weight_norm/{n}": v for (n, _), v in zip(named, host[1:], strict=True)})
        return out


@register
class WeightEntropy(Probe):
    """Absolute weight entropy ``H(W) = -sum |w| log |w|`` of each weight matrix.

    Natural log, no normalization, ``0 log 0 = 0``; a weight matrix is any parameter with two or
    more dimensions (embeddings included). Lower entropy means a more concentrated weight
    distribution, which Golechha (2024, arXiv 2405.12755) found tracks generalization
    better than the weight norm.

    Keys: ``weight_entropy/<name>`` per matrix and ``weight_entropy``, their sum.
    """

    name = "weight_entropy"

    def compute(self, ctx: ProbeContext) -> Mapping[str, Value]:
        matrices = [(n, p) for n, p in ctx.model.named_parameters() if p.dim() >= 2]
        if not matrices:
            raise ProbeNotApplicable("the model has no weight matrix (parameter with dim >= 2)")
        device = matrices[0][1].device
        entropies = torch.stack([absolute_entropy(p.float()).to(device) for _, p in matrices])
        host = torch.cat([entropies.double().sum()[None], entropies.double()]).tolist()  # sync
        out: dict[str, Value] = {"weight_entropy": host[0]}
        out.update({f"weight_entropy/{n}": v for (n, _), v in zip(matrices, host[1:], strict=True)})
        return out


@register
class GradWeightCosine(Probe):
    """Cosine between the descent direction ``-grad`` and the weights, all parameters as one vector.

    ``grad_weight_cosine = <-g, w> / (|g| |w|)`` over every parameter that has a ``.grad`` (the
    gradient of the last backward pass, flattened and concatenated). Prieto et al. (2025, arXiv
    2501.04697) show that after overfitting the gradient aligns with "naive loss minimization":
    scaling the weights along their own direction to inflate the logits, which delays grokking and
    leads to softmax collapse. Under that regime a descent step points along ``+w`` and the value
    rises towards ~0.9; the sign convention (negative gradient) makes the rise positive.

    Not applicable when no parameter has a gradient, or when the gradients are all zero (they were
    zeroed before the probe ran).
    """

    name = "grad_weight_cosine"

    def compute(self, ctx: ProbeContext) -> Mapping[str, Value]:
        pairs = [
            (p.detach(), p.grad.detach()) for p in ctx.model.parameters() if p.grad is not None
        ]
        if not pairs:
            raise ProbeNotApplicable("no parameter has a .grad; run the probe after backward()")
        device = pairs[0][0].device
        parts = torch.stack([_moments(w, g).to(device) for w, g in pairs]).sum(0)
        dot, grad_sq, weight_sq = parts.tolist()  # sync
        if grad_sq == 0.0:
            raise ProbeNotApplicable("every gradient is zero; were they zeroed before the probe?")
        if weight_sq == 0.0:
            raise ProbeNotApplicable("every parameter with a gradient is zero")
        return {"grad_weight_cosine": -dot / (math.sqrt(grad_sq) * math.sqrt(weight_sq))}
