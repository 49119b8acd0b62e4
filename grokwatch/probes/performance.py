"""Loss and accuracy on the train and test probe sets: the curves grokking is defined on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch

from grokwatch.exceptions import ProbeNotApplicable
from grokwatch.probes.base import Probe, ProbeContext, Value
from grokwatch.probes.registry import register


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose arg-max logit is the target, averaged over the last batch axis.

    ``logits`` is ``(..., N, C)``; ``targets`` is ``(N,)`` class indices or ``(N, C)`` one-hot or
    soft targets (then their arg-max is the class). Returns a float64 tensor of shape ``(...)``.
    """
    if targets.is_floating_point() and targets.dim() >= 2:
        targets = targets.argmax(-1)
    return (logits.argmax(-1) == targets).double().mean(-1)


@register
class LossAccuracy(Probe):
    """Mean loss and accuracy on each probe set that was given.

    ``<split>_loss`` is the mean of ``ctx.loss_fn`` (per-sample, cross-entropy by default) over the
    split; ``<split>_accuracy`` the fraction of inputs whose arg-max logit is the target. These are
    the curves the memorization and grokking steps are read from (``grokwatch.events``).

    Keys: ``train_loss``, ``train_accuracy``, ``test_loss``, ``test_accuracy`` (only the splits
    present). Not applicable without any probe set.
    """

    name = "loss_accuracy"

    def compute(self, ctx: ProbeContext) -> Mapping[str, Value]:
        splits: list[Literal["train", "test"]] = []
        if ctx.train is not None:
            splits.append("train")
        if ctx.test is not None:
            splits.append("test")
        if not splits:
            raise ProbeNotApplicable("no train or test data was given to the agent")
        keys: list[str] = []
        stats: list[torch.Tensor] = []
        for split in splits:
            _, targets = ctx.require(split)
            logits = ctx.capture(split).logits
            stats += [ctx.loss_fn(logits, targets).float().mean(), accuracy(logits, targets)]
            keys += [f"{split}_loss", f"{split}_accuracy"]
        host = torch.stack(stats).tolist()  # sync
        return dict(zip(keys, host, strict=True))
