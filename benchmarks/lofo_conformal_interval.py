"""Ablation (session 9, not adopted): the interval's level calibrated by split conformal.

The fold's fit is the shipped recipe's (:func:`~grokwatch.forecast.training.fit_replays`, folds
by family); then each fold model gets its own hazard (time) model, fitted on the fold model's
rows exactly as the model's is (:func:`timed_fold_models`; the classifier comes out the same,
which the fit report checks). On its validation family's runs that grok within their budget
(comprehension runs too), at every evaluation from ``t_mem`` (from the start for a run that
never memorized) to ``t_grok``, the true ``u = log(t_grok / t)`` gives the central share of the
forecast distribution that would just have covered it, ``|2 F(u) - 1|`` (:func:`plateau_shares`;
a central interval of level ``a`` covers ``u`` exactly when this is ``<= a``). The level of the
model's interval (0.8 before) becomes the 80 % quantile of those shares
(:func:`conformal_level`): the evaluations of a run share its weight, and the runs weigh as in
the isotonic map (``transfer.family_weights`` over all the fitting runs: every family the same
in total over all its runs, so a family's runs that grok weigh by its share of them) -- or with
``--median`` the median of the fitting families' own 80 % quantiles (a new family as one more
draw). Every held-out family is then judged as ``grokwatch evaluate --lofo`` judges it
(:mod:`benchmarks.lofo_variant`); each fold model's fit report keeps the level, each family's
own and the inner coverage of the 80 % interval before, and its out-of-fold summary (``oof``)
reads the fold models' ``t_grok`` and their interval at that level.

    GW_PAUSABLE=1 nice -n 19 python -m benchmarks.lofo_conformal_interval --cap 100 \\
        --out /tmp/conformal   # lofo.json, lofo.md to lofo_ablations/conformal_interval
    # --median: lofo_ablations/conformal_interval_median
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import clone

from benchmarks.lofo_variant import Say, parser, run
from grokwatch.forecast import hazard
from grokwatch.forecast.forecaster import GrokForecaster, weighted_quantile
from grokwatch.forecast.replay import Replay
from grokwatch.forecast.training import FitReport, _oof_summary, fit_replays, training_rows
from grokwatch.forecast.transfer import family_weights

COVERAGE = 0.8
"""The coverage the level is calibrated for (the interval's level before)."""


def timed_fold_models(
    report: FitReport, train: Sequence[Replay], extra: Sequence[Replay], options: Mapping[str, Any]
) -> list[GrokForecaster]:
    """Each fold model fitted again on its own rows (every run of the other folds, thinned
    copies included, as :func:`~.training.fit_replays` fits it), now with a time model."""
    everything = [*train, *extra]
    scale = len(train) / len(everything)  # a run and its thinned copies weigh 1 together
    out = []
    for f, model in enumerate(report.fold_models):
        rows = [r for r in everything if report.fold_of_run[r.run_id] != f]
        X, y, w, t, _ = training_rows(
            rows, budget_samples=options["budget_samples"], seed=options["seed"]
        )
        timed = clone(model).fit(X, y, sample_weight=w * scale, log_time_to_grok=t)
        timed.calibration_ = model.calibration_
        out.append(timed)
    return out


def plateau_shares(model: GrokForecaster, runs: Sequence[Replay]) -> list[np.ndarray]:
    """Per run that groks within its budget: ``|2 F(u) - 1|`` at every evaluation from
    ``t_mem`` (from the first, for a run that never memorized) to ``t_grok`` (``F``: the
    model's CDF of ``u = log(t_grok / t)``); runs without such an evaluation are left out."""
    out = []
    for r in runs:
        if not r.groks or r.t_grok is None:
            continue
        keep = (r.steps >= (r.t_mem or 0)) & (r.steps < r.t_grok)
        if not keep.any():
            continue
        t = np.maximum(r.steps[keep].astype(float), 1.0)
        F = model.predict_time_cdf(r.X[keep])
        u = np.log(r.t_grok / t)
        out.append(np.abs(2.0 * hazard.cdf_at(F, u, model.time_bin_width) - 1.0))
    return out


Shares = Mapping[str, Sequence[np.ndarray]]
"""Family -> its runs' :func:`plateau_shares`."""


def _pooled(shares: Shares, run_weight: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Every share with its weight: a run of family ``f`` weighs ``run_weight[f]``, shared by
    its evaluations."""
    values, weights = [], []
    for fam, runs in shares.items():
        for s in runs:
            values.append(s)
            weights.append(np.full(s.size, run_weight[fam] / s.size))
    return np.concatenate(values), np.concatenate(weights)


def conformal_level(
    shares: Shares,
    run_weight: Mapping[str, float],
    *,
    median: bool = False,
    coverage: float = COVERAGE,
) -> float:
    """The interval's level: the weighted ``coverage`` quantile of ``shares`` (a run of family
    ``f`` weighing ``run_weight[f]``, its evaluations sharing it), or with ``median`` the median
    of each family's own quantile (where the weights of its runs are all the same)."""
    q = np.array([coverage])
    if median:
        return float(np.median([conformal_level({f: s}, run_weight, coverage=coverage)
                                for f, s in shares.items()]))  # fmt: skip
    values, weights = _pooled(shares, run_weight)
    return float(weighted_quantile(values, weights, q)[0])


def covered(shares: Shares, run_weight: Mapping[str, float], level: float) -> float:
    """The weighted share (as :func:`conformal_level` weighs) that a ``level`` interval covers."""
    values, weights = _pooled(shares, run_weight)
    return float(np.sum(weights[values <= level]) / np.sum(weights))


def fit_conformal(
    train: Sequence[Replay],
    extra: Sequence[Replay],
    options: Mapping[str, Any],
    say: Say,
    *,
    median: bool = False,
) -> tuple[GrokForecaster, FitReport, dict[str, Any]]:
    """The fold's model with its interval's level from :func:`conformal_level`."""
    model, report = fit_replays(train, extra, log=say, **options)
    shares: dict[str, list[np.ndarray]] = {}
    same = True
    timed = timed_fold_models(report, train, extra, options)
    validation = [
        [r for r in report.replays if report.fold_of_run[r.run_id] == f] for f in range(len(timed))
    ]
    for m, fold, val in zip(timed, report.fold_models, validation, strict=True):
        X = np.concatenate([r.X for r in val])
        same &= bool(np.array_equal(m.decision_function(X), fold.decision_function(X)))
        shares[val[0].family] = plateau_shares(m, val)
    fams = [r.family for r in report.replays]  # every fitting run, as the isotonic map weighs
    run_weight = dict(zip(fams, family_weights(fams), strict=True))
    level = conformal_level(shares, run_weight, median=median)
    model.interval = level
    # the out-of-fold summary, now with the fold models' t_grok and interval at that level
    forecasts = {}
    for m, val in zip(timed, validation, strict=True):
        m.interval = level
        forecasts.update({r.run_id: r.forecasts(m) for r in val})
    report.oof = _oof_summary(report.replays, forecasts, report.alert_threshold)
    added = {
        "interval_level": level,
        "interval_level_family": {
            f: conformal_level({f: s}, run_weight) for f, s in shares.items()
        },
        "interval_coverage_uncalibrated": covered(shares, run_weight, COVERAGE),
        "check_fold_classifiers_equal": same,
    }
    say(f"interval level {level:.3f} (the 80 % interval covered "
        f"{added['interval_coverage_uncalibrated']:.3f} out of fold, "
        f"{report.oof['t_grok_interval_coverage']:.4f} at mid-plateau)")  # fmt: skip
    return model, report, added


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--median", action="store_true", help="the median family's level")
    args = ap.parse_args()
    name = "conformal_interval_median" if args.median else "conformal_interval"

    def fit(
        train: Sequence[Replay], extra: Sequence[Replay], options: Mapping[str, Any], say: Say
    ) -> tuple[GrokForecaster, FitReport, dict[str, Any]]:
        return fit_conformal(train, extra, options, say, median=args.median)

    run(args, fit, {"name": name, "script": "benchmarks/lofo_conformal_interval.py",
                    "median": args.median})  # fmt: skip


if __name__ == "__main__":
    main()
