"""Features: causal, scale-free, cadence-robust, and never raising on bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _forecast_synth import COLUMNS, make_run
from hypothesis import given, settings
from hypothesis import strategies as st

from grokwatch.forecast.features import FEATURE_NAMES, FeatureState, rows_of, run_features
from grokwatch.forecast.replay import thin


def features(run, **kw):
    return run_features(run.steps, run.columns, run.values, budget=run.labels["budget"], **kw)[0]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("changepoints", ["bayes", "kernel"])
def test_appending_future_points_never_changes_features_at_t(seed, changepoints):
    run = make_run(seed, groks=seed % 2 == 0)
    full = features(run, changepoints=changepoints)
    for cut in (3, 10, len(run.steps) // 2, len(run.steps) - 1):
        prefix = run_features(
            run.steps[:cut],
            run.columns,
            run.values[:cut],
            budget=run.labels["budget"],
            changepoints=changepoints,
        )[0]
        np.testing.assert_array_equal(prefix, full[:cut])


def test_future_values_do_not_leak_even_when_they_are_wild():
    run = make_run(1, groks=True)
    base = features(run)
    wild = run.values.copy()
    wild[30:] = np.random.default_rng(0).normal(0, 1e3, wild[30:].shape)
    np.testing.assert_array_equal(
        run_features(run.steps, run.columns, wild, budget=run.labels["budget"])[0][:30],
        base[:30],
    )


def test_features_do_not_depend_on_the_scale_of_norms_losses_and_complexity():
    run = make_run(2, groks=True)
    scaled = run.values.astype(float).copy()
    col = {c: j for j, c in enumerate(COLUMNS)}
    scaled[:, col["weight_norm"]] *= 37.0
    scaled[:, col["circuit_complexity_mean"]] *= 0.01
    for name in ("train_loss", "test_loss"):
        scaled[:, col[name]] *= 8.0
    scaled[:, col["loss_spectral_energy"]] *= 64.0
    a = features(run)
    b = run_features(run.steps, run.columns, scaled, budget=run.labels["budget"])[0]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_features_at_cadence_250_stay_close_to_cadence_50():
    run = make_run(4, groks=True)
    fine = features(run)
    idx = thin(run.steps, 250)
    coarse = run_features(
        run.steps[idx], run.columns, run.values[idx], budget=run.labels["budget"]
    )[0]
    names = (
        "test_accuracy",
        "log_t_over_t_mem",
        "log_weight_norm_drop_from_peak",
        "log_test_loss_drop_from_peak",
        "weight_norm_log_slope",
        "test_accuracy_slope",
    )
    cols = [FEATURE_NAMES.index(n) for n in names]
    # from the plateau on, except while the trend window [t / 1.5, t] holds the test-accuracy
    # jump (sharper than either cadence, so interpolating across it differs)
    s, t_grok = run.steps[idx], run.labels["t_grok"]
    late = (s >= 1000) & ((s < t_grok - 300) | (s > 1.6 * t_grok))
    np.testing.assert_allclose(coarse[late][:, cols], fine[idx[late]][:, cols], atol=0.1)


def test_missing_measures_give_nan_features_and_are_named():
    state = FeatureState(budget=1000)
    x = state.update(50, {"train_accuracy": 0.5, "test_accuracy": 0.1})
    assert np.isnan(x[FEATURE_NAMES.index("weight_norm_log_slope")])
    assert state.missing == ("train_loss", "test_loss", "weight_norm")
    assert x.shape == (len(FEATURE_NAMES),)


values_strategy = st.dictionaries(
    st.sampled_from([*COLUMNS, "unknown", "train_loss_step"]),
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-5, 5),
        st.just("x"),
        st.none(),
        st.integers(10**400, 10**401),
    ),
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-10, 10_000), values_strategy), max_size=25),
    st.one_of(st.none(), st.integers(1, 20_000)),
)
def test_any_input_gives_a_vector_and_never_raises(points, budget):
    state = FeatureState(budget=budget)
    for step, values in points:
        x = state.update(step, values)
        assert x.shape == (len(FEATURE_NAMES),)
    assert state.n_points <= len(points)


def test_steps_that_do_not_advance_are_ignored():
    state = FeatureState()
    a = state.update(100, {"train_accuracy": 0.5})
    b = state.update(100, {"train_accuracy": 0.9})
    c = state.update(50, {"train_accuracy": 0.9})
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert state.n_points == 1


def test_bad_options_are_refused_with_the_value():
    with pytest.raises(ValueError, match="budget"):
        FeatureState(budget=0)
    with pytest.raises(ValueError, match="changepoints"):
        FeatureState(changepoints="pelt")


def test_memory_stays_bounded_on_long_runs():
    state = FeatureState()
    for s in range(1, 200_000, 50):
        state.update(s, {"weight_norm": 1.0 + math.sin(s)})
    assert state.held < 3000


def test_steps_beyond_32_bits_are_kept_exactly():
    state = FeatureState()
    big = 2**31 - 5
    for i, step in enumerate((big - 200, big - 100, big, big + 100, big + 10**12)):
        state.update(step, {"test_accuracy": 0.1 * i, "weight_norm": 1.0 + i})
    assert state.last_step == big + 10**12 and state.n_points == 5
    assert np.isfinite(state.vector()[FEATURE_NAMES.index("test_accuracy_slope")])


def test_a_measure_seen_once_long_ago_does_not_pin_the_window():
    once = FeatureState()
    once.update(1, {"weight_norm": 2.0, "fourier_gini": 0.5})
    for s in range(50, 100_000, 50):
        once.update(s, {"weight_norm": 1.0 + math.sin(s)})
    assert once.held < 1500
    i = FEATURE_NAMES.index("fourier_gini")
    assert once.vector()[i] == 0.5  # still read: its only value stands for the whole window


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-10, 3_000), values_strategy), min_size=1, max_size=40),
    st.lists(st.integers(1, 12), min_size=1, max_size=40),
    st.one_of(st.none(), st.integers(1, 5_000)),
)
def test_a_batch_leaves_exactly_the_state_of_one_update_at_a_time(points, sizes, budget):
    one, many = FeatureState(budget=budget), FeatureState(budget=budget)
    i = 0
    for size in sizes * len(points):
        batch = points[i : i + size]
        if not batch:
            break
        for step, values in batch:
            one.update(step, values)
        many.add_rows(*rows_of(batch))
        i += size
        np.testing.assert_array_equal(many.vector(), one.vector())
        assert (many.n_points, many.non_finite, many.last_step, many.missing) == (
            one.n_points, one.non_finite, one.last_step, one.missing)  # fmt: skip
        assert many.change_points == one.change_points
        assert many.tracker.events == one.tracker.events
        assert many.tracker.phase is one.tracker.phase


def test_a_corpus_like_run_in_batches_matches_point_by_point():
    run = make_run(4, groks=True)
    pts = [(int(s), dict(zip(run.columns, map(float, v), strict=True)))
           for s, v in zip(run.steps, run.values, strict=True)]  # fmt: skip
    one, many = FeatureState(budget=run.labels["budget"]), FeatureState(budget=run.labels["budget"])
    for k in range(0, len(pts), 37):
        for step, values in pts[k : k + 37]:
            one.update(step, values)
        many.add_rows(*rows_of(pts[k : k + 37]))
        np.testing.assert_array_equal(many.vector(), one.vector())
    assert many.change_points and many.change_points == one.change_points
