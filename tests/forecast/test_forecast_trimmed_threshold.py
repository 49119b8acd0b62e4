"""benchmarks/lofo_trimmed_threshold.py: a fold model's alert threshold becomes the second
highest of its fitting families' own thresholds."""

from __future__ import annotations

import pytest
from _scripts import ROOT, load_script

from grokwatch.forecast.io import load


def _module():
    return load_script("benchmarks/lofo_trimmed_threshold.py", "lofo_trimmed_threshold")


def test_the_threshold_of_the_second_highest_family():
    model = load(ROOT / "benchmarks/results/forecast/lofo/models/mlp.npz")
    own = model.fit_report_["family_thresholds"]
    pooled = model.alert_threshold_
    _module().second_highest(model)
    # mlp's fold: digits has the highest own threshold, the transformer the second
    assert max(own, key=own.get) == "digits"
    assert model.alert_threshold_ == own["transformer"] == sorted(own.values())[-2]
    assert model.alert_threshold_ < pooled


def test_one_family_has_no_second():
    model = load(ROOT / "benchmarks/results/forecast/lofo/models/mlp.npz")
    model.fit_report_ = {"family_thresholds": {"digits": 0.99}}
    with pytest.raises(ValueError, match="two fitting families"):
        _module().second_highest(model)
