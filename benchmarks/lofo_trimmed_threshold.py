"""Ablation (session 10, not adopted): the alert threshold of the second-highest fitting family.

The shipped rule pools the fitting families' out-of-fold negatives and takes the smallest
threshold with a false-alarm rate <= 5 %; one family whose negatives run high (digits' near
misses reach P ~ 1) then holds the threshold up for every other. This ablation drops the
single worst family: each fold model of a committed leave-one-family-out run gets, as its
alert threshold, the second highest of the fitting families' own thresholds (its fit
report's ``family_thresholds``: each family's smallest threshold with FAR <= 5 % out of
fold), and the run is scored again with nothing refitted (:func:`benchmarks.lofo_rescore.rescore`).

    nice -n 19 python -m benchmarks.lofo_trimmed_threshold --from benchmarks/results/forecast \\
        --out /tmp/trimmed  # lofo.json, lofo.md to lofo_ablations/trimmed_threshold
"""

from __future__ import annotations

from benchmarks.lofo_rescore import main as rescore_main
from grokwatch.forecast.forecaster import GrokForecaster


def second_highest(model: GrokForecaster) -> None:
    """Set ``model``'s alert threshold to the second highest family threshold of its fit."""
    thresholds = sorted(model.fit_report_["family_thresholds"].values())
    if len(thresholds) < 2:
        raise ValueError("the trimmed threshold needs at least two fitting families")
    model.alert_threshold_ = thresholds[-2]


def main() -> None:
    variant = {"name": "trimmed_threshold", "script": "benchmarks/lofo_trimmed_threshold.py"}
    rescore_main(second_highest, variant, __doc__)


if __name__ == "__main__":
    main()
