"""Dynamics of the training loss itself, read from ``ctx.train_losses`` (no forward pass)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from grokwatch.exceptions import ConfigError, ProbeNotApplicable
from grokwatch.probes.base import Probe, ProbeContext, Value
from grokwatch.probes.registry import register

#: Fewest loss values the de-trended Hjorth parameters are computed from.
MIN_POINTS = 8


def hjorth(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Hjorth activity and mobility of the linearly de-trended series.

    The least-squares line is removed; activity is the variance of the residual ``r``, mobility
    ``sqrt(var(diff r) / var r)``. A residual at rounding level (an exactly linear series) gives
    ``(0.0, 0.0)``; non-finite input gives ``(nan, nan)``.
    """
    y = np.asarray(values, dtype=np.float64)
    if not np.isfinite(y).all():
        return float("nan"), float("nan")
    t = np.arange(y.size, dtype=np.float64) - (y.size - 1) / 2.0
    centered = y - y.mean()
    slope = float(t @ centered) / float(t @ t)
    residual = centered - slope * t
    activity = float(np.mean(residual**2))
    scale = float(np.max(np.abs(y)))
    if activity <= (64 * np.finfo(np.float64).eps * scale) ** 2:
        return 0.0, 0.0
    mobility = float(np.sqrt(np.var(np.diff(residual)) / activity))
    return activity, mobility


@register
class LossSpectralEnergy(Probe):
    """Variance of the de-trended training loss over the recent window (Hjorth activity).

    Over the training-loss values of the last ``window`` (100) steps (``ctx.train_losses`` at
    steps ``> ctx.step - window``: a window in steps, not in calls, so a loop that reports its
    loss only every 10 steps gets fewer values, not a longer stretch), the least-squares linear
    trend is removed; ``loss_spectral_energy`` is the variance of the residual (Hjorth activity,
    equal to the total power of its spectrum by Parseval) and ``loss_hjorth_mobility`` is
    ``sqrt(var(diff r) / var(r))``, a proxy for its mean frequency. Notsawo et al. (2023, arXiv
    2306.13253) predict grokking from the oscillations of the early training loss (first ~400
    steps). Not applicable with fewer than 8 loss values in the window.
    """

    name = "loss_spectral_energy"

    def __init__(self, *, window: int = 100) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < MIN_POINTS:
            raise ConfigError(f"window must be an integer >= {MIN_POINTS}, got {window=}")
        self.window = window

    def compute(self, ctx: ProbeContext) -> Mapping[str, Value]:
        start = ctx.step - self.window
        losses = [
            v for s, v in zip(ctx.train_loss_steps, ctx.train_losses, strict=True) if s > start
        ]
        if len(losses) < MIN_POINTS:
            raise ProbeNotApplicable(
                f"needs at least {MIN_POINTS} training-loss values in the last {self.window} "
                f"steps, got {len(losses)}"
            )
        activity, mobility = hjorth(losses)
        return {"loss_spectral_energy": activity, "loss_hjorth_mobility": mobility}
