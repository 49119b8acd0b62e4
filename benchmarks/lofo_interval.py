"""Where along the plateau the 80 % ``t_grok`` interval holds on a family it never saw.

The leave-one-family-out evaluation reads the interval once per grokking run, at mid-plateau
(``t_mem + gap / 2``: ``grokwatch.forecast.evaluate``). A user reads it at every evaluation.
This script takes the committed leave-one-family-out run (its settings from ``lofo.json``, its
fold models from ``lofo/models``; :func:`benchmarks.lofo_near_miss.held_out`), forecasts each
held-out family's grokking runs with the model fitted without it, and reports the coverage

- at mid-plateau, as the evaluation computes it (the same number as ``lofo.json``);
- over every evaluation from ``t_mem`` to ``t_grok`` (each run weighing 1);
- in each third of the plateau (``(t - t_mem) / gap``), with the share of evaluations whose
  interval ends before ``t_grok`` (the forecast is too early) and starts after it (too late).

Nothing is fitted or tuned here.

    nice -n 19 python -m benchmarks.lofo_interval --from benchmarks/results/forecast \\
        --json benchmarks/results/forecast/lofo_interval.json
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.lofo_near_miss import report_families
from grokwatch.decision import Forecast
from grokwatch.forecast.evaluate import _time_error
from grokwatch.forecast.replay import POSITIVE, Replay

THIRDS = ("first third", "second third", "last third")


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def family_report(runs: Sequence[Replay], model: Any) -> dict[str, Any]:
    """The coverage of ``model``'s interval on the grokking runs among ``runs`` (see the
    module docstring)."""
    pos = [r for r in runs if r.outcome in POSITIVE and r.t_mem is not None and r.gap]
    forecasts: dict[str, list[Forecast]] = {r.run_id: r.forecasts(model) for r in pos}
    every: list[float] = []
    parts: dict[str, dict[str, list[float]]] = {
        k: {"covered": [], "early": [], "late": []} for k in THIRDS
    }
    for r in pos:
        t_grok, t_mem, gap = float(r.t_grok), float(r.t_mem), float(r.gap)  # none is None here
        rows = []  # (position in the plateau, covered, ends before t_grok, starts after it)
        for s, f in zip(r.steps, forecasts[r.run_id], strict=True):
            if not (t_mem <= s < t_grok) or f.t_grok_low is None or f.t_grok_high is None:
                continue
            rows.append(((s - t_mem) / gap, f.t_grok_low <= t_grok <= f.t_grok_high,
                         f.t_grok_high < t_grok, f.t_grok_low > t_grok))  # fmt: skip
        if not rows:
            continue
        every.append(float(np.mean([c for _, c, _, _ in rows])))
        for k, name in enumerate(THIRDS):
            mine = [row for row in rows if k / 3 <= row[0] < (k + 1) / 3]
            if mine:
                for j, key in enumerate(("covered", "early", "late"), start=1):
                    parts[name][key].append(float(np.mean([row[j] for row in mine])))
    mid = _time_error(pos, forecasts)["t_grok_interval_coverage"]
    return {
        "nominal": float(model.interval),
        "n_grokking": len(pos),
        "mid_plateau": float(mid),
        "every_evaluation": _mean(every),
        "thirds": {
            name: {key: _mean(v) for key, v in part.items()} | {"n_runs": len(part["covered"])}
            for name, part in parts.items()
        },
    }


def main() -> dict[str, Any]:
    return report_families(__doc__, family_report)


if __name__ == "__main__":
    main()
