"""Monte Carlo dropout on the frozen model: accuracy variance and the dropout robustness curve.

Dropout is applied to the hidden activations (``ctx.layout.hidden``) of the trained model, which
need not have been trained with dropout. K sub-networks, one Bernoulli keep mask each, run in ONE
batched forward (:meth:`~grokwatch.probes.base.ProbeContext.forward` with ``hidden_masks``); the
layers before the hidden activation run once, only the layers after it run K times. Fresh
per-input masks would cost 4-9 training steps at K = 16. Masks come from the
probe's private generator.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from grokwatch.adapters import Inputs
from grokwatch.exceptions import ConfigError, ProbeNotApplicable
from grokwatch.probes.base import Probe, ProbeContext, Value
from grokwatch.probes.performance import accuracy
from grokwatch.probes.registry import register

#: Dropout rates of the robustness curve, 0.0 to 0.9 (Salah & Yevick 2025).
ROBUSTNESS_RATES: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(10))


def keep_masks(rates: torch.Tensor, width: int, generator: torch.Generator) -> torch.Tensor:
    """Inverted-dropout masks ``(K, width)``: Bernoulli(1 - rate_k) keeps, scaled by 1/(1 - rate_k).

    A rate of 0 gives a mask of exact ones.
    """
    keep = (1.0 - rates).unsqueeze(1).expand(-1, width)  # (K, width)
    return torch.bernoulli(keep, generator=generator) / keep


def _test_set_and_width(ctx: ProbeContext) -> tuple[Inputs, torch.Tensor, int]:
    ctx.module(ctx.layout.hidden, "hidden activation")
    x, y = ctx.require("test")
    hidden = ctx.test_capture.hidden
    if hidden is None:
        raise ProbeNotApplicable("the hidden activation layer was not called in the forward")
    return x, y, hidden.shape[-1]


def _check_passes(passes: int, minimum: int) -> None:
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < minimum:
        raise ConfigError(f"passes must be an integer >= {minimum}, got {passes=}")


@register
class MCDropout(Probe):
    """Mean and variance of test accuracy over K Monte Carlo dropout passes.

    Each pass k drops hidden units with probability ``rate`` (0.3) using its own keep mask,
    scaled by ``1 / (1 - rate)``, and measures test accuracy ``acc_k``. Keys:
    ``mc_dropout_accuracy_mean`` and ``mc_dropout_accuracy_var`` (population variance over the
    passes). Salah & Yevick (2025, arXiv 2507.11645) found the variance peaks locally
    around grokking; one replication found the peak at or after grokking on a transformer.

    ``passes`` defaults to 16, not the paper's 100, for cost: the masked part of the forward
    grows linearly with K. On the p = 53 reference model (1405 test inputs, one CPU thread) 16
    passes cost about 2 full-batch training steps at every evaluation, 100 passes about 19. The
    relative standard error of a variance estimated from K passes is about ``sqrt(2 / (K - 1))``,
    0.37 at K = 16 against 0.14 at K = 100: coarser, but enough to see a peak that spans several
    evaluations. Not applicable without a hidden activation layer or without test data.
    """

    name = "mc_dropout"
    requires = ("hidden", "test")

    def __init__(self, *, passes: int = 16, rate: float = 0.3) -> None:
        _check_passes(passes, 2)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate < 1.0:
            raise ConfigError(f"rate must be a number in [0, 1), got {rate=}")
        self.passes = passes
        self.rate = rate

    def compute(self, ctx: ProbeContext) -> Mapping[str, Value]:
        x, y, width = _test_set_and_width(ctx)
        rates = torch.full((self.passes,), float(self.rate), device=y.device)
        masks = keep_masks(rates, width, ctx.generator(y.device, stream=self.name))
        acc = accuracy(ctx.forward(x, hidden_masks=masks).logits, y)  # (K,)
        shifted = acc - acc[0]  # equal passes give a variance of exactly 0
        var = (shifted - shifted.mean()).square().mean()
        host_mean, host_var = torch.stack([acc[0] + shifted.mean(), var]).tolist()  # sync
        return {"mc_dropout_accuracy_mean": host_mean, "mc_dropout_accuracy_var": host_var}


@register
class DropoutRobustness(Probe):
    """Test accuracy as a function of the dropout rate: the dropout robustness curve.

    For each rate in 0.0, 0.1, ..., 0.9, ``passes`` (4) sub-networks with their own keep masks;
    all 10 x passes sub-networks run in one batched forward. The curve is the mean accuracy per
    rate (Salah & Yevick 2025, arXiv 2507.11645: generalizing networks degrade more
    gracefully). Keys: ``dropout_robustness_auc``, the mean accuracy over the rates (area under
    the curve on [0, 1) with step 0.1); snapshot arrays ``dropout_robustness_curve`` ``(10,)`` and
    ``dropout_robustness_rates`` ``(10,)``. Computed every 10th evaluation (``period``): its 40
    sub-networks cost about 8 training steps on the p = 53 reference model (one CPU thread).
    """

    name = "dropout_robustness"
    requires = ("hidden", "test")
    period = 10

    def __init__(self, *, passes: int = 4) -> None:
        _check_passes(passes, 1)
        self.passes = passes

    def compute(self, ctx: ProbeContext) -> Mapping[str, Value]:
        x, y, width = _test_set_and_width(ctx)
        rates = torch.tensor(ROBUSTNESS_RATES, device=y.device)
        per_pass = rates.repeat_interleave(self.passes)  # (R * passes,)
        masks = keep_masks(per_pass, width, ctx.generator(y.device, stream=self.name))
        acc = accuracy(ctx.forward(x, hidden_masks=masks).logits, y)  # (R * passes,)
        curve = acc.reshape(len(ROBUSTNESS_RATES), self.passes).mean(1).double()
        host = curve.cpu().numpy()  # sync
        out: dict[str, Value] = {"dropout_robustness_auc": float(host.mean())}
        if ctx.snapshot:
            out["dropout_robustness_curve"] = host
            out["dropout_robustness_rates"] = np.asarray(ROBUSTNESS_RATES, dtype=np.float64)
        return out
