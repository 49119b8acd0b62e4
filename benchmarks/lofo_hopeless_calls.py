"""Where a held-out family's grokking runs come under the hopeless threshold, and what the
flag does there.

For the committed leave-one-family-out run in ``--from`` (its settings, seeded sample and fold
models, read as :mod:`benchmarks.lofo_near_miss` reads them), every confident forecast
(:data:`~grokwatch.forecast.online.MIN_CONFIDENCE`) of a grokking run, after it memorized and
before ``t_grok``, whose P(grok within budget) is at or below the fold model's hopeless
threshold: its step, P and phase, and whether the forecast raised the hopeless flag there or
the phase kept it down (:data:`~grokwatch.forecast.online.NEVER_HOPELESS`). Nothing is fitted.

    nice -n 19 python -m benchmarks.lofo_hopeless_calls --from benchmarks/results/forecast \\
        --json benchmarks/results/forecast/lofo_hopeless_calls.json
"""

from __future__ import annotations

from typing import Any

from benchmarks.lofo_near_miss import report_families
from grokwatch.decision import Phase
from grokwatch.forecast.online import MIN_CONFIDENCE
from grokwatch.forecast.replay import Replay


def family_report(runs: list[Replay], model: Any) -> dict[str, Any]:
    """The hopeless threshold of ``model`` and every forecast of the module docstring."""
    threshold = float(model.hopeless_threshold_)
    under = []
    for r in runs:
        if r.outcome != "grokking" or r.t_grok is None:
            continue
        for s, f in zip(r.steps, r.forecasts(model), strict=True):
            if (s < r.t_grok and f.confidence >= MIN_CONFIDENCE
                    and f.phase is not Phase.MEMORIZING
                    and f.p_grok_budget <= threshold):  # fmt: skip
                under.append({"run_id": r.run_id, "step": int(s), "t_grok": r.t_grok,
                              "p_grok_budget": f.p_grok_budget, "phase": f.phase.value,
                              "hopeless": f.hopeless})  # fmt: skip
    return {"hopeless_threshold": threshold, "under": under}


def main() -> dict[str, Any]:
    return report_families(__doc__, family_report)


if __name__ == "__main__":
    main()
