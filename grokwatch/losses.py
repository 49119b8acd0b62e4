"""Which per-sample loss a run minimizes, read off the training loss its loop reports.

The loss probe measures a per-sample loss on the probe sets, and the forecaster reads those
losses next to the loss the loop reports: both must be the same loss. When the user names it
(``ModelIO(loss_fn=...)``) the agent measures that one. When not, at its first evaluation the
agent compares the training loss the loop reported (``Agent.step(step, loss=...)``, or
``train_loss=``) with the candidate losses of the model's outputs on the train probe set, and
measures the one that matches for the rest of the run (:func:`match_loss`):

- ``cross_entropy``: cross-entropy of the logits (also the loss kept when nothing matches);
- ``mse``: squared error against one-hot targets, summed over the classes (Omnigrok's loss);
- ``mse_mean``: the same averaged over the classes (``nn.MSELoss()`` on one-hot targets).

A candidate matches when the ratio of the reported loss to it lies in :data:`MATCH_RANGE` and
the reported loss is at least :data:`SEPARATION` times closer to it (on a log scale) than to
any other candidate in that range, and those at least :data:`APART` away from it: two
candidates that nearly coincide (cross-entropy and the mean MSE of a two-class model near its
init) are not told apart, and cross-entropy is kept.

The range is wider above 1 than below: a loop reports the loss of the step *before* its
optimizer step, the agent measures after it, and early in a run one step can cut the loss by a
third (a digits MLP at 6 times the usual init: 841 reported at
step 1, 587 measured after the step). So a match looser than :data:`SETTLED` is not
final: the loss the loop reports at the next step is the loss of the weights the agent
measured, and it decides (if the choice changes, the agent corrects that first evaluation and
rebuilds its detector on it; what it already sent to the run table or a detector service keeps
the first guess); when it matches nothing (mini-batches, a subset of the train set) the first
guess stands only if the next step's loss lies nearest the same candidate, else cross-entropy
is measured. The
comparison costs one pass over logits the loss probe computes anyway. The choice is made once:
the losses the forecaster has seen stay comparable over the run.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping

import torch
from torch import nn

from grokwatch.adapters import LossFn
from grokwatch.probes.base import cross_entropy_per_sample

__all__ = [
    "APART",
    "CANDIDATES",
    "MATCH_RANGE",
    "SEPARATION",
    "SETTLED",
    "LossChoice",
    "LossSource",
    "candidate_means",
    "match_loss",
    "match_means",
    "mse_mean_one_hot",
    "mse_one_hot",
]

#: The reported loss over a candidate: the ratios that may match it.
MATCH_RANGE = (0.8, 2.0)
#: ... and lies at least this many times closer to it (on a log scale) than to the others.
SEPARATION = 2.0
#: A match within this ratio is settled at once; a looser one waits for the loss the loop
#: reports at the next step (on the weights the agent measured).
SETTLED = 1.05
#: ... and every other candidate lies at least this ratio away from the reported loss.
APART = 1.04


def mse_one_hot(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Squared error against one-hot targets summed over the classes: ``(..., N, C)`` logits
    and ``(N,)`` class indices give ``(..., N)``."""
    one_hot = nn.functional.one_hot(targets, logits.shape[-1]).to(torch.float32)  # (N, C)
    return (logits.float() - one_hot).square().sum(-1)


def mse_mean_one_hot(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """:func:`mse_one_hot` averaged over the classes (what ``nn.MSELoss()`` gives)."""
    return mse_one_hot(logits, targets) / logits.shape[-1]


CANDIDATES: Mapping[str, LossFn] = {
    "cross_entropy": cross_entropy_per_sample,
    "mse": mse_one_hot,
    "mse_mean": mse_mean_one_hot,
}
"""The losses the agent recognizes from the reported one, by name."""


class LossSource(enum.Enum):
    """Why the agent measures the loss it does."""

    NAMED = "named"
    """The user named it (``ModelIO(loss_fn=...)``): no detection."""
    PENDING = "pending"
    """No evaluation yet: cross-entropy until the first one."""
    MATCHED = "matched"
    """The reported training loss matched this candidate at the first evaluation."""
    NOT_REPORTED = "not_reported"
    """The loop reported no training loss by the first evaluation: cross-entropy."""
    NO_TRAIN_DATA = "no_train_data"
    """No train probe set to compare with: cross-entropy."""
    NO_MATCH = "no_match"
    """The reported loss matched no candidate, or more than one: cross-entropy."""


@dataclasses.dataclass(frozen=True)
class LossChoice:
    """The per-sample loss the agent measures, and why.

    ``name`` is a key of :data:`CANDIDATES` (``"named"`` for the user's own); ``reported``
    the training loss compared with; ``candidates`` each candidate's mean on the train probe
    set at that evaluation.
    """

    name: str
    source: LossSource
    message: str
    step: int | None = None
    reported: float | None = None
    candidates: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @property
    def nearest(self) -> str | None:
        """The candidate whose mean lies nearest the reported loss on a log scale."""
        if self.reported is None or not (math.isfinite(self.reported) and self.reported > 0):
            return None
        usable = {k: v for k, v in self.candidates.items() if math.isfinite(v) and v > 0}
        if not usable:
            return None
        return min(usable, key=lambda k: abs(math.log(self.reported / usable[k])))  # type: ignore[operator]

    @property
    def settled(self) -> bool:
        """Whether the reported loss matched within :data:`SETTLED` (or the loss was named)."""
        if self.source is LossSource.NAMED:
            return True
        value = self.candidates.get(self.name)
        if self.source is not LossSource.MATCHED or not value or self.reported is None:
            return False
        return abs(math.log(self.reported / value)) <= math.log(SETTLED)

    @property
    def loss_fn(self) -> LossFn:
        """The candidate's per-sample loss (cross-entropy for ``"named"``: not used then)."""
        return CANDIDATES.get(self.name, cross_entropy_per_sample)

    @classmethod
    def fallback(cls, source: LossSource, message: str, step: int | None = None) -> LossChoice:
        """Cross-entropy, for ``source``'s reason."""
        return cls("cross_entropy", source, message, step)

    def to_json(self) -> dict[str, object]:
        return {
            "loss": self.name,
            "source": self.source.value,
            "message": self.message,
            "step": self.step,
            "reported": self.reported,
            "candidates": dict(self.candidates),
        }


def candidate_means(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Each candidate's mean over ``(logits (N, C), targets (N,))`` (one device sync); a
    candidate that cannot be computed is left out."""
    means: list[torch.Tensor] = []
    names: list[str] = []
    with torch.no_grad():
        for name, fn in CANDIDATES.items():
            try:
                means.append(fn(logits, targets).float().mean())
            except (RuntimeError, ValueError, IndexError):
                continue
            names.append(name)
    if not means:
        return {}
    return dict(zip(names, torch.stack(means).tolist(), strict=True))  # sync


def match_loss(
    reported: float, logits: torch.Tensor, targets: torch.Tensor, *, step: int | None = None
) -> LossChoice:
    """The candidate of :data:`CANDIDATES` whose mean over ``(logits (N, C), targets (N,))``
    matches ``reported``: :func:`match_means` on :func:`candidate_means`."""
    return match_means(reported, candidate_means(logits, targets), step=step)


def match_means(
    reported: float, means: Mapping[str, float], *, step: int | None = None
) -> LossChoice:
    """The candidate whose mean (``means``: name -> mean on the train probe set) matches
    ``reported`` (see the module docstring), else cross-entropy with the reason.

    A candidate that is not finite and positive is left out; so is a reported loss that is
    not finite and positive (then nothing matches).
    """
    means = dict(means)
    usable = {k: v for k, v in means.items() if math.isfinite(v) and v > 0}
    shown = ", ".join(f"{k} {v:.4g}" for k, v in means.items())
    if not (math.isfinite(reported) and reported > 0) or not usable:
        return LossChoice(
            "cross_entropy",
            LossSource.NO_MATCH,
            f"reported training loss {reported:.4g} cannot be compared with {shown}; "
            f"measuring cross-entropy (name the loss: ModelIO(loss_fn=...))",
            step,
            reported,
            means,
        )
    low, high = MATCH_RANGE
    gaps = sorted(
        (abs(math.log(reported / v)), k) for k, v in usable.items() if low <= reported / v <= high
    )
    best_gap, best = gaps[0] if gaps else (math.inf, "")
    runner_up = gaps[1][0] if len(gaps) > 1 else math.inf
    if gaps and runner_up >= max(SEPARATION * best_gap, math.log(APART)):
        return LossChoice(
            best,
            LossSource.MATCHED,
            f"measuring {best}: the reported training loss {reported:.4g} matches it "
            f"({shown} on the train probe set)",
            step,
            reported,
            means,
        )
    return LossChoice(
        "cross_entropy",
        LossSource.NO_MATCH,
        f"the reported training loss {reported:.4g} matches no loss the agent knows "
        f"({shown} on the train probe set); measuring cross-entropy (name the loss: "
        f"ModelIO(loss_fn=...))",
        step,
        reported,
        means,
    )
