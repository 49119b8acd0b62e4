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
- **median-family threshold** (:func:`median_threshold`): the median of the fitting
  families' own thresholds. A new family's own threshold is one more draw from the
  distribution those estimate, so the median keeps the budget on a new family about half
  the time; the pooled threshold sits near the largest of them (the families whose negative
  runs reach the highest P decide), and the worst-family one at it.
- **family-balanced weights** (:func:`family_weights`): every family weighs the same in
  fitting, whatever its number of runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from grokwatch.forecast.replay import choose_alert_threshold

__all__ = [
    "THRESHOLD_RULES",
    "family_threshold",
    "family_weights",
    "median_threshold",
    "rule_threshold",
    "threshold_from_report",
]

THRESHOLD_RULES = ("pooled", "family", "median", "clear")
"""``pooled``: false-alarm budget over all fitting runs; ``family``: on each family;
``median``: on the median family; ``clear``: pooled over the negatives that stayed clear of
the label's 90 % (best test accuracy below :data:`NEAR_MISS` before the budget)."""

NEAR_MISS = 0.8
"""A negative whose test accuracy reached this before its budget is a near miss of the label
(``t_grok``: 0.9); see ``benchmarks/lofo_near_miss.py``."""


def family_threshold(negative_max: Mapping[str, Sequence[float]], far: float) -> float:
    """The smallest threshold with at most ``far`` false alarms on every family: the largest
    of the families' own thresholds (:func:`~.replay.choose_alert_threshold`; families
    without negative runs impose nothing). ``negative_max``: family -> its negative runs'
    largest alert scores."""
    per = [choose_alert_threshold(v, far) for v in negative_max.values() if len(v)]
    return max(per) if per else 0.5


def median_threshold(negative_max: Mapping[str, Sequence[float]], far: float) -> float:
    """The median of the families' own thresholds for ``far`` false alarms
    (:func:`~.replay.choose_alert_threshold`; families without negative runs impose nothing).
    ``negative_max``: family -> its negative runs' largest alert scores."""
    per = [choose_alert_threshold(v, far) for v in negative_max.values() if len(v)]
    return float(np.median(per)) if per else 0.5


def rule_threshold(rule: str, negative_max: Mapping[str, Sequence[float]], far: float) -> float:
    """The alert threshold of ``rule`` (one of :data:`THRESHOLD_RULES`) for ``far``."""
    if rule in ("pooled", "clear"):  # "clear": the caller left the near misses out
        return choose_alert_threshold([v for vs in negative_max.values() for v in vs], far)
    if rule == "family":
        return family_threshold(negative_max, far)
    if rule == "median":
        return median_threshold(negative_max, far)
    raise ValueError(f"rule must be one of {THRESHOLD_RULES}, got {rule=!r}")


def threshold_from_report(report: Mapping[str, Any], rule: str) -> float:
    """The alert threshold ``rule`` gives a fitted model, from its fit report alone (the
    families' own thresholds it records): the per-family rules need nothing else, the pooled
    ones only the report of a fit by that rule (the pooled runs' scores are not kept), and
    the report of a ``clear`` fit gives no other rule (its families' own thresholds leave
    the near misses out)."""
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"rule must be one of {THRESHOLD_RULES}, got {rule=!r}")
    if rule == report.get("threshold_rule", "pooled"):
        return float(report["alert_threshold"])
    fitted = report.get("threshold_rule", "pooled")
    per = [float(v) for v in (report.get("family_thresholds") or {}).values()]
    if rule in ("pooled", "clear") or not per or fitted == "clear":
        # a clear fit records the families' own thresholds over their clear negatives only
        raise ValueError(f"the report of a {fitted!r} fit cannot give {rule=!r}")
    return max(per) if rule == "family" else float(np.median(per))


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
