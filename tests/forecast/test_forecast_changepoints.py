"""Change-point detectors: one contract over both methods, seeded signals with known bends."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grokwatch.decision import ChangePoint, ChangePointMethod, Direction
from grokwatch.forecast.changepoints import (
    BayesianOnlineCPD,
    LogTimeSlopes,
    WindowKernelCPD,
    shift_strength,
)

METHODS = [BayesianOnlineCPD, WindowKernelCPD]


def bent_signal(steps: np.ndarray, bend: float, seed: int, noise: float = 0.003) -> np.ndarray:
    """Flat in log-step, then rising with slope 0.5 per log-step after ``bend``."""
    rng = np.random.default_rng(seed)
    lt = np.log(steps / bend)
    return np.where(lt > 0, 0.5 * lt, 0.0) + rng.normal(0, noise, steps.size)


def detect(method: type, steps: np.ndarray, y: np.ndarray) -> list[ChangePoint]:
    slopes = LogTimeSlopes(1)
    det = method(["m"])
    found: list[ChangePoint] = []
    for s, v in zip(steps, y, strict=True):
        obs = slopes.update(int(s), np.array([v]))
        if obs is not None:
            found += det.update(*obs)
    return found


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("every", [50, 250])
def test_a_bend_is_found_once_near_its_step_with_its_direction(method, seed, every):
    steps = np.r_[1, np.arange(every, 12_001, every)]
    found = detect(method, steps, bent_signal(steps, 2000.0, seed))
    up = [c for c in found if c.direction is Direction.UP]
    assert len(up) == 1, found
    cp = up[0]
    assert abs(math.log(cp.step / 2000.0)) < math.log(1.5)
    assert cp.detected_at >= cp.step and cp.strength >= 2.0
    assert cp.slope_after > cp.slope_before
    assert cp.method is method.method and cp.measure == "m"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", range(4))
def test_a_straight_noisy_trend_has_no_change_points(method, seed):
    steps = np.r_[1, np.arange(50, 12_001, 50)]
    rng = np.random.default_rng(seed)
    y = 0.3 * np.log(steps) + rng.normal(0, 0.003, steps.size)
    assert detect(method, steps, y) == []


@pytest.mark.parametrize("method", METHODS)
def test_nan_streams_are_skipped_and_never_raise(method):
    det = method(["a", "b"])
    for i in range(60):
        x = np.array([np.nan, 0.0 if i < 30 else 1.0])
        det.update(100 * (i + 1), x)
    assert all(c.measure == "b" for c in det.update(7000, np.array([np.nan, 1.0])))


def test_both_methods_emit_the_same_event_type():
    assert {m.method for m in METHODS} == set(ChangePointMethod)
    cp = ChangePoint("m", 10, Direction.UP, 3.0, ChangePointMethod.BAYES, 12, 0.0, 1.0)
    assert cp.to_json()["direction"] == "up" and cp.to_json()["method"] == "bayes"


def test_log_time_slopes_sample_every_ratio_and_measure_per_log_step():
    g = LogTimeSlopes(1, ratio=2.0)
    out = [g.update(s, np.array([math.log(s)])) for s in (1, 2, 3, 4, 8, 9, 16)]
    got = [(o[0], round(float(o[1][0]), 6)) for o in out if o is not None]
    assert got == [(2, 1.0), (4, 1.0), (8, 1.0), (16, 1.0)]
    with pytest.raises(ValueError, match="ratio"):
        LogTimeSlopes(1, ratio=1.0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(-1e6, 1e6), st.just(math.nan), st.just(math.inf)),
        min_size=1,
        max_size=80,
    )
)
def test_run_length_posterior_stays_a_distribution(xs):
    det = BayesianOnlineCPD(["a"], max_run=16)
    for i, x in enumerate(xs):
        det.update(10 * (i + 1), np.array([x if math.isfinite(x) else math.nan]))
        p = np.exp(det.log_r[0])
        assert np.all(np.isfinite(p)) and p.sum() == pytest.approx(1.0)


def test_shift_strength_is_scale_aware_and_safe():
    a, b = np.zeros(5), np.ones(5)
    assert shift_strength(a, b) == pytest.approx(1 / 0.05)
    assert shift_strength(np.array([]), b) == 0.0
    assert shift_strength(a, b, floor=1.0) == pytest.approx(1.0)


def test_the_observation_history_keeps_exactly_the_last_rows():
    from grokwatch.forecast.changepoints import _History

    hist = _History(2, 5)
    rows = np.arange(46, dtype=float).reshape(23, 2)
    for i, row in enumerate(rows):
        hist.append(100 + i, row)
        np.testing.assert_array_equal(hist.x, rows[max(0, i - 4) : i + 1])
        assert list(hist.steps) == list(range(100 + max(0, i - 4), 101 + i))


def reference_filter(xs: list[float], steps: list[int], *, max_run: int = 16):
    """Adams & MacKay for one stream, one run length at a time in plain floats: the textbook
    recursion the vectorized filter must agree with (log run-length posterior, mu, beta)."""
    mu0, kappa0, alpha0, beta0 = 0.0, 0.1, 1.0, 0.01
    r = max_run + 1
    log_r, mu, beta = [0.0] + [-math.inf] * max_run, [mu0] * r, [beta0] * r
    seen, last = 0, None
    for x, step in zip(xs, steps, strict=True):
        dt = 1.0 if last is None else math.log(max(step, 1) / max(last, 1))
        last = step
        if not math.isfinite(x):
            continue
        hazard = 1.0 - math.exp(-max(dt, 1e-6))
        kappa = [kappa0 + min(j, seen) for j in range(r)]
        alpha = [alpha0 + 0.5 * min(j, seen) for j in range(r)]
        pred = []
        for j in range(r):
            nu, s2 = 2 * alpha[j], beta[j] * (kappa[j] + 1) / (alpha[j] * kappa[j])
            pred.append(
                math.lgamma((nu + 1) / 2)
                - math.lgamma(nu / 2)
                - 0.5 * math.log(nu * math.pi * s2)
                - (nu + 1) / 2 * math.log1p((x - mu[j]) ** 2 / (nu * s2))
            )
        joint = [a + b for a, b in zip(log_r, pred, strict=True)]
        top = max(joint)
        change = top + math.log(sum(math.exp(v - top) for v in joint)) + math.log(hazard)
        grow = [v + math.log1p(-hazard) for v in joint]
        new = [change, *grow[:-2], np.logaddexp(grow[-2], grow[-1])]
        top = max(new)
        total = top + math.log(sum(math.exp(v - top) for v in new))
        log_r = [v - total for v in new]
        mu_up = [(kappa[j] * mu[j] + x) / (kappa[j] + 1) for j in range(r)]
        beta_up = [beta[j] + kappa[j] * (x - mu[j]) ** 2 / (2 * (kappa[j] + 1)) for j in range(r)]
        mu, beta = [mu0, *mu_up[:-1]], [beta0, *beta_up[:-1]]
        seen += 1
    return np.array(log_r), np.array(mu), np.array(beta)


@pytest.mark.parametrize("gaps", [False, True], ids=["same count", "streams apart"])
def test_the_vectorized_filter_is_the_textbook_recursion(gaps):
    rng = np.random.default_rng(7)
    n, k = 40, 3
    x = rng.normal(0, 0.5, (n, k))
    x[20:, 0] += 3.0  # a shift in one stream
    if gaps:  # streams that skip observations have seen fewer than the others
        x[rng.random((n, k)) < 0.3] = np.nan
    steps = [int(100 * 1.1**i) for i in range(n)]
    det = BayesianOnlineCPD(["a", "b", "c"], max_run=16)
    for i in range(n):
        det.update(steps[i], x[i])
    for j in range(k):
        log_r, mu, beta = reference_filter(list(x[:, j]), steps)
        np.testing.assert_allclose(np.exp(det.log_r[j]), np.exp(log_r), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(det.mu[j], mu, rtol=1e-9)
        np.testing.assert_allclose(det.beta[j], beta, rtol=1e-9)
        seen = int(np.isfinite(x[:, j]).sum())
        assert det.kappa[j].tolist() == [0.1 + min(i, seen) for i in range(17)]
        assert det.alpha[j].tolist() == [1.0 + 0.5 * min(i, seen) for i in range(17)]
