"""benchmarks/lofo_near_miss.py: a negative alarms only where the evaluation would alert (a
confident forecast at or above the threshold, before the budget)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
from _scripts import load_script


def _module():
    return load_script("benchmarks/lofo_near_miss.py", "lofo_near_miss_benchmark")


@dataclasses.dataclass
class _Run:
    """What family_report reads of a replayed run."""

    outcome: str
    p: list[float]
    confidence: list[float]
    accuracy: list[float]
    budget: int = 300
    t_grok: int | None = None

    @property
    def steps(self) -> np.ndarray:
        return np.arange(1, len(self.p) + 1) * 100

    @property
    def measures(self) -> dict[str, list[float]]:
        return {"test_accuracy": self.accuracy}

    def forecasts(self, model: object) -> list[SimpleNamespace]:
        return [SimpleNamespace(p_grok_budget=p, confidence=c)
                for p, c in zip(self.p, self.confidence, strict=True)]  # fmt: skip


def test_an_unconfident_or_late_forecast_is_no_false_alarm():
    report = _module().family_report(
        [
            _Run("memorization", [0.2, 0.99, 0.3], [0.9, 0.3, 0.9], [0.1, 0.85, 0.2]),  # unsure
            _Run("memorization", [0.2, 0.3, 0.4, 0.99], [0.9] * 4, [0.1] * 4),  # after budget
            _Run("confusion", [0.2, 0.97, 0.3], [0.9, 0.6, 0.9], [0.1, 0.2, 0.3]),  # alarm
            _Run("grokking", [0.99, 0.99], [0.9, 0.9], [0.5, 0.95], t_grok=200),
        ],
        SimpleNamespace(alert_threshold_=0.95),
    )
    assert report["n_negative"] == 3 and report["n_grokking"] == 1
    assert report["false_alarms"] == 1
    assert report["near_misses"] == 1  # the unsure run reached 0.85 >= NEAR_MISS
    assert report["false_alarms_near"] == 0
    assert report["alarmed_best_test_accuracy"] == [0.3, 0.3, 0.3]
