"""Forecast and change-point series in the Prometheus exposition."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from grokwatch.decision import ChangePoint, ChangePointMethod, Direction, Forecast, Phase
from grokwatch.metrics import RunCollector, RunView, change_point_counts


def test_forecast_alert_confidence_horizon_and_change_points_are_exported():
    cps = [
        ChangePoint("test_accuracy", 900, Direction.UP, 4.0, ChangePointMethod.BAYES, 950, 0, 1),
        ChangePoint("weight_norm", 800, Direction.DOWN, 3.0, ChangePointMethod.BAYES, 850, 0, -1),
        ChangePoint("weight_norm", 300, Direction.DOWN, 2.5, ChangePointMethod.BAYES, 350, 0, -1),
    ]
    view = RunView(
        run_id="r1",
        step=1000,
        values={},
        phase=Phase.PLATEAU,
        events={},
        last_report=None,
        forecast=Forecast(
            step=1000,
            p_grok_horizon=0.3,
            horizon=1000,
            p_grok_budget=0.9,
            confidence=0.75,
            alert=True,
        ),
        change_points=change_point_counts(cps),
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(lambda: [view]))
    fams = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert all(f.documentation for f in fams.values())
    assert fams["grokwatch_run_grok_alert"].samples[0].value == 1.0
    assert fams["grokwatch_run_forecast_confidence_ratio"].samples[0].value == 0.75
    horizon = fams["grokwatch_run_grok_horizon_probability_ratio"].samples[0]
    assert horizon.value == 0.3 and horizon.labels["horizon_steps"] == "1000"
    counts = {
        (s.labels["measure"], s.labels["direction"]): s.value
        for s in fams["grokwatch_run_measure_change_points"].samples
        if s.name.endswith("_total")
    }
    assert counts == {("test_accuracy", "up"): 1.0, ("weight_norm", "down"): 2.0}
