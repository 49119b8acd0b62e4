"""benchmarks/lofo_interval.py: the interval's coverage along the plateau, read as the
evaluation reads it at mid-plateau."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from _scripts import load_script


def _module():
    return load_script("benchmarks/lofo_interval.py", "lofo_interval_benchmark")


@dataclasses.dataclass
class _Run:
    """What family_report reads of a replayed run: a grokking run memorizing at 100 and
    grokking at 700 (gap 600), an evaluation every 100 steps, its intervals given."""

    run_id: str
    intervals: list[tuple[float, float]]
    outcome: str = "grokking"
    t_mem: int = 100
    t_grok: int = 700

    @property
    def gap(self) -> int:
        return self.t_grok - self.t_mem

    @property
    def steps(self) -> np.ndarray:
        return np.arange(1, len(self.intervals) + 1) * 100

    def forecasts(self, model: object) -> list[SimpleNamespace]:
        return [SimpleNamespace(t_grok=(lo + hi) / 2, t_grok_low=lo, t_grok_high=hi)
                for lo, hi in self.intervals]  # fmt: skip


def test_coverage_by_position_in_the_plateau_and_at_mid_plateau():
    # evaluations at 100..800. a's plateau (t_mem 100 <= t < t_grok 700) holds 100..600, at
    # positions 0, 1/6 | 2/6, 3/6 | 4/6, 5/6 of its gap; b's (t_grok 400) holds 100..300, at
    # 0 | 1/3 | 2/3: a run of 6 plateau evaluations and one of 3 weigh the same
    early, late, hit = (200.0, 600.0), (800.0, 900.0), (500.0, 900.0)
    a = _Run("a", [early, early, hit, hit, late, late, hit, hit])
    b = _Run("b", [(300.0, 500.0)] * 8, t_grok=400)
    negative = _Run("c", [early] * 8, outcome="memorization")
    report = _module().family_report([a, b, negative], SimpleNamespace(interval=0.8))
    assert report["n_grokking"] == 2 and report["nominal"] == 0.8
    # a: 2 of its 6 plateau evaluations hold t_grok; b: 3 of 3 (pooled it would be 5 of 9)
    assert report["every_evaluation"] == pytest.approx(np.mean([2 / 6, 1.0]))
    first = report["thirds"]["first third"]  # a: early, early; b: hit
    assert first["covered"] == pytest.approx(0.5) and first["early"] == pytest.approx(0.5)
    assert first["n_runs"] == 2
    second = report["thirds"]["second third"]  # a: hit, hit; b: hit
    assert second["covered"] == pytest.approx(1.0) and second["late"] == pytest.approx(0.0)
    last = report["thirds"]["last third"]  # a: late, late; b: hit
    assert last["covered"] == pytest.approx(0.5) and last["late"] == pytest.approx(0.5)
    assert last["early"] == pytest.approx(0.0)
    # mid-plateau as grokwatch's evaluation reads it (the newest evaluation at or before
    # t_mem + gap / 2: a's at 400, b's at 200): both hold t_grok there
    assert report["mid_plateau"] == pytest.approx(1.0)
    a.intervals[3] = late
    assert _module().family_report([a, b], SimpleNamespace(interval=0.8))["mid_plateau"] == 0.5
