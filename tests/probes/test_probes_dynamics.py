"""Hjorth activity and mobility of the de-trended training loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from grokwatch.exceptions import ConfigError
from grokwatch.probes import Layout, ProbeContext, run_probe
from grokwatch.probes.dynamics import LossSpectralEnergy, hjorth

MODEL = nn.Linear(2, 2)


def ctx_for(losses: list[float]) -> ProbeContext:
    return ProbeContext(MODEL, step=0, layout=Layout.discover(MODEL), train_losses=losses)


def numpy_hjorth(y: np.ndarray) -> tuple[float, float]:
    t = np.arange(len(y), dtype=np.float64)
    residual = y - np.polyval(np.polyfit(t, y, 1), t)
    return float(residual.var()), float(np.sqrt(np.diff(residual).var() / residual.var()))


def test_linear_trend_has_no_energy() -> None:
    out = run_probe(LossSpectralEnergy(), ctx_for([3.0 - 0.02 * i for i in range(50)])).values
    assert out == {"loss_spectral_energy": 0.0, "loss_hjorth_mobility": 0.0}


def test_matches_numpy_polyfit() -> None:
    y = 2.0 - 0.01 * np.arange(40) + np.random.default_rng(0).normal(scale=0.1, size=40)
    out = run_probe(LossSpectralEnergy(), ctx_for(list(y))).values
    activity, mobility = numpy_hjorth(y)
    assert out["loss_spectral_energy"] == pytest.approx(activity, rel=1e-9)
    assert out["loss_hjorth_mobility"] == pytest.approx(mobility, rel=1e-9)


def test_sinusoid_on_a_trend() -> None:
    t = np.arange(400)
    y = 5 - 0.003 * t + 0.2 * np.sin(2 * np.pi * t / 20)  # 20 whole periods
    activity, mobility = hjorth(y)
    assert activity == pytest.approx(0.2**2 / 2, rel=0.02)
    # mobility of a sinusoid sampled at unit step: 2 sin(w / 2), w = 2 pi / 20
    assert mobility == pytest.approx(2 * math.sin(math.pi / 20), rel=0.02)


def test_window_uses_only_the_latest_values() -> None:
    noisy_then_linear = [float(i % 2) for i in range(30)] + [1.0 - 0.1 * i for i in range(10)]
    assert run_probe(LossSpectralEnergy(window=10), ctx_for(noisy_then_linear)).values == {
        "loss_spectral_energy": 0.0,
        "loss_hjorth_mobility": 0.0,
    }
    assert (
        run_probe(LossSpectralEnergy(window=40), ctx_for(noisy_then_linear)).values[
            "loss_spectral_energy"
        ]
        > 0.01
    )


def test_too_few_values_and_bad_windows() -> None:
    assert run_probe(LossSpectralEnergy(), ctx_for([1.0] * 7)).status == "not_applicable"
    assert run_probe(LossSpectralEnergy(), ctx_for([1.0] * 8)).status == "ok"
    for bad in (7, 0, 8.5, True):
        with pytest.raises(ConfigError, match="window"):
            LossSpectralEnergy(window=bad)  # type: ignore[arg-type]


def test_non_finite_losses_are_reported() -> None:
    result = run_probe(LossSpectralEnergy(), ctx_for([1.0] * 9 + [math.inf]))
    assert result.status == "non_finite"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-100, 100), min_size=8, max_size=60),
    st.floats(-10, 10),
    st.floats(-10, 10),
)
def test_activity_ignores_added_trends(values: list[float], offset: float, slope: float) -> None:
    y = np.asarray(values)
    base, _ = hjorth(y)
    moved, _ = hjorth(y + offset + slope * np.arange(len(y)))
    assert base >= 0.0
    assert moved == pytest.approx(base, rel=1e-6, abs=1e-9)


def test_hjorth_gives_the_same_bits_at_any_memory_alignment() -> None:
    # a nearly linear loss window (the measure then cancels ~5 digits): the same values at
    # eight 8-byte offsets give the same float64 bits (docs/corpus.md, *Whole runs, a sample*)
    rng = np.random.default_rng(0)
    for n in (8, 37, 100):
        y = 1e-3 + 1e-6 * np.arange(n) + 1e-9 * rng.standard_normal(n)
        results = set()
        for offset in range(8):
            buffer = np.empty(n + 8)
            buffer[offset : offset + n] = y
            results.add(hjorth(buffer[offset : offset + n]))
        assert len(results) == 1, n
