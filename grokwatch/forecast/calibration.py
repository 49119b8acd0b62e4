"""How well the forecast's probabilities mean what they say: reliability and ECE.

A forecast of P(grok within budget) = 0.8 should come true for 8 runs in 10. The rows are
the ones the forecaster is fitted on -- one per evaluation before ``t_grok`` and within the
budget, label "the run reaches ``t_grok`` within its budget" -- and each run weighs 1 in
total, so long runs do not dominate (as in fitting).

:func:`reliability` bins the probabilities into ``bins`` equal-width bins and returns, per
bin, the mean forecast, the observed frequency and the weight; the **expected calibration
error** is ``sum_b W_b / W * |mean forecast_b - frequency_b|`` (Naeini et al. 2015; Guo et al.
2017 use the same binned form).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from grokwatch.decision import Forecast
from grokwatch.forecast.replay import Replay

__all__ = ["Reliability", "forecast_rows", "reliability"]


@dataclasses.dataclass(frozen=True)
class Reliability:
    """Binned calibration of probabilities ``p`` against outcomes ``y``."""

    edges: tuple[float, ...]
    mean_forecast: tuple[float, ...]
    """Weighted mean forecast per bin (NaN for an empty bin)."""
    frequency: tuple[float, ...]
    """Weighted share of positives per bin (NaN for an empty bin)."""
    weight: tuple[float, ...]
    """Each bin's share of the total weight."""
    ece: float

    def to_json(self) -> dict[str, Any]:
        return {
            "edges": list(self.edges),
            "mean_forecast": [_none(v) for v in self.mean_forecast],
            "frequency": [_none(v) for v in self.frequency],
            "weight": list(self.weight),
            "ece": _none(self.ece),
        }


def _none(v: float) -> float | None:
    return v if math.isfinite(v) else None


def reliability(p: Any, y: Any, weight: Any = None, *, bins: int = 10) -> Reliability:
    """Reliability of probabilities ``p`` for binary outcomes ``y`` (row weights optional).

    ``p`` must lie in [0, 1]; rows with a non-finite ``p`` are refused."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins=}")
    p = np.asarray(p, dtype=float).reshape(-1)
    y = np.asarray(y, dtype=float).reshape(-1)
    w = np.ones(p.size) if weight is None else np.asarray(weight, dtype=float).reshape(-1)
    if not p.size == y.size == w.size:
        raise ValueError(f"p, y and weight differ in length: {p.size}, {y.size}, {w.size}")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("probabilities must be finite and within [0, 1]")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    total = float(w.sum())
    mean_p, freq, share = [], [], []
    ece = 0.0
    for b in range(bins):
        inside = which == b
        wb = float(w[inside].sum())
        share.append(wb / total if total > 0 else 0.0)
        if wb <= 0:
            mean_p.append(math.nan)
            freq.append(math.nan)
            continue
        mp = float(np.sum(w[inside] * p[inside]) / wb)
        fr = float(np.sum(w[inside] * y[inside]) / wb)
        mean_p.append(mp)
        freq.append(fr)
        ece += wb / total * abs(mp - fr)
    return Reliability(
        edges=tuple(float(e) for e in edges),
        mean_forecast=tuple(mean_p),
        frequency=tuple(freq),
        weight=tuple(share),
        ece=ece if total > 0 else math.nan,
    )


def forecast_rows(
    runs: Sequence[Replay], forecasts: Mapping[str, Sequence[Forecast]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(p, y, weight)`` over the evaluations before ``t_grok`` and within the budget of
    every run: the forecast P(grok within budget), whether the run groks within its budget,
    and ``1 / rows`` of its run."""
    ps, ys, ws = [], [], []
    for r in runs:
        keep = [
            i
            for i, s in enumerate(r.steps.tolist())
            if (r.t_grok is None or s < r.t_grok) and (r.budget is None or s <= r.budget)
        ]
        if not keep:
            continue
        fc = forecasts[r.run_id]
        ps.append(np.array([fc[i].p_grok_budget for i in keep], dtype=float))
        ys.append(np.full(len(keep), float(r.groks)))
        ws.append(np.full(len(keep), 1.0 / len(keep)))
    if not ps:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    return np.concatenate(ps), np.concatenate(ys), np.concatenate(ws)
