"""Measures of the activations on the probe sets: sparsity, spectral entropy, softmax collapse.

All three read the shared captures of :class:`~grokwatch.probes.base.ProbeContext` (one forward
pass per split for every probe). A quantity that is undefined on the data, such as the entropy of
a representation with no variance at all, is reported as NaN (status ``non_finite``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import torch

from grokwatch.exceptions import ConfigError, ProbeNotApplicable
from grokwatch.probes.base import Probe, ProbeContext, Value, cross_entropy_per_sample
from grokwatch.probes.registry import register


def _probe_split(ctx: ProbeContext) -> Literal["train", "test"]:
    """The test set if there is one, else the train set."""
    if ctx.test is not None:
        return "test"
    if ctx.train is not None:
        return "train"
    raise ProbeNotApplicable("no train or test data was given to the agent")


def spectral_entropy(features: torch.Tensor) -> torch.Tensor:
    """Normalized entropy of the covariance eigenvalues of ``features`` ``(rows, d)``.

    ``H(lambda / sum(lambda)) / log(d)``, eigenvalues clamped at 0. 1 means variance spread
    evenly over all d directions, 0 a rank-one representation. NaN when the features are
    non-finite or have no variance beyond float32 rounding. The covariance is accumulated in
    float32 (2-4x faster than float64 on a CPU; eigenvalues below ~1e-6 of the largest barely
    move the entropy), the eigenvalues are computed in float64.
    """
    x = features.detach().float()
    centered = x - x.mean(0)
    cov = (centered.T @ centered).double() / (x.shape[0] - 1)  # (d, d)
    finite = torch.isfinite(cov).all()
    cov = torch.where(finite, cov, torch.zeros_like(cov))
    eig = torch.linalg.eigvalsh(cov).clamp_min(0.0)
    share = eig / eig.sum()
    entropy = -torch.special.xlogy(share, share).sum() / math.log(x.shape[1])
    resolution = 1e-6 * x.abs().max().double()  # spread below float32 rounding of the values
    defined = finite & (eig.sum() > x.shape[1] * resolution.square())
    return torch.where(defined, entropy, torch.full_like(entropy, math.nan))


@register
class ActivationSparsity(Probe):
    """How many hidden activations are (near) zero on the probe set.

    On the test set if given, else the train set, with ``a`` the output of the hidden activation
    module (``ctx.layout.hidden``, e.g. the ReLU):

    - ``activation_sparsity``: fraction of activations with ``|a| < threshold`` (Golechha 2024,
      arXiv 2405.12755; the paper gives no threshold, 0.1 is the project default);
    - ``activation_zero_fraction``: fraction exactly 0;
    - ``inactive_neurons``: fraction of hidden units that are exactly 0 on every probe input
      ("dead" ReLUs; Salah & Yevick 2025, arXiv 2507.11645, where this falls as the
      model generalizes).
    """

    name = "activation_sparsity"
    requires = ("hidden",)

    def __init__(self, *, threshold: float = 0.1) -> None:
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not math.isfinite(threshold)
            or threshold <= 0
        ):
            raise ConfigError(f"threshold must be a finite number > 0, got {threshold=}")
        self.threshold = threshold

    def compute(self, ctx: ProbeContext) -> Mapping[str, Value]:
        ctx.module(ctx.layout.hidden, "hidden activation")
        hidden = ctx.capture(_probe_split(ctx)).hidden
        if hidden is None:
            raise ProbeNotApplicable("the hidden activation layer was not called in the forward")
        a = hidden.detach().float()  # (rows, H)
        zero = a == 0
        stats = torch.stack(
            [
                (a.abs() < self.threshold).float().mean(),
                zero.float().mean(),
                zero.all(0).float().mean(),
            ]
        )
        sparsity, zeros, inactive = stats.tolist()  # sync
        return {
            "activation_sparsity": sparsity,
            "activation_zero_fraction": zeros,
            "inactive_neurons": inactive,
        }


@register
class SpectralEntropy(Probe):
    """Normalized spectral entropy of the penultimate representation on the train set.

    ``spectral_entropy = H(lambda / sum lambda) / log d``, with ``lambda`` the eigenvalues of the
    covariance of the input of the output layer (``ctx.layout.output``), tiny negative eigenvalues
    clamped to 0, natural log, ``d`` the representation width. Truong (2026, arXiv 2604.13123)
    found it fell below 0.609 before grokking in 10/10 transformer runs (mean lead 1020 steps),
    but it also collapses in MLPs that never grok: a sign of compression, not a guarantee.
    NaN when the representation has no variance.
    """

    name = "spectral_entropy"
    requires = ("output", "train")

    def compute(self, ctx: ProbeContext) -> Mapping[str, Value]:
        ctx.module(ctx.layout.output, "output nn.Linear")
        ctx.require("train")
        features = ctx.train_capture.penultimate
        if features is None:
            raise ProbeNotApplicable("the output layer was not called with a tensor input")
        rows, width = features.shape
        if width < 2 or rows < 2:
            raise ProbeNotApplicable(
                f"spectral entropy needs >= 2 features and >= 2 rows, got {rows}x{width}"
            )
        return {"spectral_entropy": spectral_entropy(features).item()}  # sync


@register
class SoftmaxCollapse(Probe):
    """Fraction of training samples whose float32 cross-entropy is exactly 0.

    When the correct logit exceeds the others by enough, ``1 + sum(exp(z_j - z_max))`` rounds to
    1 in float32 and the sample's loss and gradient vanish: "softmax collapse". A growing
    ``softmax_collapse`` fraction is a sign that learning will stall (Prieto et al. 2025, arXiv
    2501.04697). Computed in float32 whatever the model's dtype, with class-index targets.
    """

    name = "softmax_collapse"
    requires = ("train",)

    def compute(self, ctx: ProbeContext) -> Mapping[str, Value]:
        _, targets = ctx.require("train")
        if targets.is_floating_point():
            raise ProbeNotApplicable("targets are not class indices; no cross-entropy to collapse")
        loss = cross_entropy_per_sample(ctx.train_capture.logits.float(), targets)
        return {"softmax_collapse": (loss == 0).float().mean().item()}  # sync
