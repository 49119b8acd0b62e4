"""Family-balanced weights: what makes a forecast's probability carry over to a new family.

The probability a forecaster gives ranks runs of a new family well, but its *level* moves
from family to family, and a family's share of grokking runs is its own. The isotonic map of
:func:`~grokwatch.forecast.training.fit_replays` (``calibrate="isotonic"``) is therefore
fitted with every fitting family weighing the same (:func:`family_weights`), so that the
largest family does not set the level for all.

Other transfer rules were tried in leave-one-family-out ablations and removed after they
lost them (``docs/evaluation.md``, *Ablations*): the worst, the median and the clear
negatives' family thresholds, and family-balanced weights in fitting the trees.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["family_weights"]


def family_weights(families: Sequence[str]) -> np.ndarray:
    """A weight per run so that every family weighs the same in total and the weights
    average 1 (runs of a family of ``n`` runs weigh ``N / (F n)``)."""
    names = list(families)
    if not names:
        return np.zeros(0)
    counts: dict[str, int] = {}
    for f in names:
        counts[f] = counts.get(f, 0) + 1
    n, k = len(names), len(counts)
    return np.array([n / (k * counts[f]) for f in names], dtype=float)
