"""Rules that make a forecast's threshold and interval carry over to a family it never saw.

The probability a forecaster gives ranks runs of a new family well, but its *level* moves
from family to family: a threshold that keeps 5 % false alarms on the fitting families may
give 0 % or 60 % on a new one. The rules here are chosen on the out-of-fold forecasts of
the fitting families only (:func:`~grokwatch.forecast.training.fit_replays`, folds by
family: each fold model never saw the family it forecasts), so nothing is tuned on a
family while it is held out:

- **worst-family threshold** (:func:`family_threshold`): the smallest threshold that keeps
  the false-alarm rate within budget on *every* fitting family separately, instead of on
  their pooled runs (where the largest family decides).
- **family-balanced weights** (:func:`family_weights`): every family weighs the same in
  fitting, whatever its number of runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from grokwatch.forecast.replay import choose_alert_threshold

__all__ = [
    "THRESHOLD_RULES",
    "family_threshold",
    "family_weights",
]

THRESHOLD_RULES = ("pooled", "family")
"""``pooled``: false-alarm budget over all fitting runs; ``family``: on each family."""


def family_threshold(negative_max: Mapping[str, Sequence[float]], far: float) -> float:
    """The smallest threshold with at most ``far`` false alarms on every family: the largest
    of the families' own thresholds (:func:`~.replay.choose_alert_threshold`; families
    without negative runs impose nothing). ``negative_max``: family -> its negative runs'
    largest alert scores."""
    per = [choose_alert_threshold(v, far) for v in negative_max.values() if len(v)]
    return max(per) if per else 0.5


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
