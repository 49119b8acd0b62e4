"""Ablation (session 9, not adopted): group-robust fitting, one step of group DRO.

With folds by family, once ``C`` is chosen each fitting family weighs its out-of-fold log loss
over the families' mean (:func:`family_log_loss`: how badly a model of the other families
forecasts it; :func:`loss_weights`), and the fold models and the model are fitted again with
those weights (``fit_replays(family_weight=...)``), so the thresholds and the isotonic map
come from the reweighted fold models. Every held-out family is then judged as ``grokwatch
evaluate --lofo`` judges it (:mod:`benchmarks.lofo_variant`); each fold model's fit report
keeps the weights and the losses they came from.

    GW_PAUSABLE=1 nice -n 19 python -m benchmarks.lofo_group_robust --cap 100 --out /tmp/robust
    # lofo.json, lofo.md to lofo_ablations/group_robust; --cap 300: group_robust_cap300
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from benchmarks.lofo_variant import Say, parser, run
from grokwatch.forecast.forecaster import GrokForecaster
from grokwatch.forecast.replay import Replay
from grokwatch.forecast.training import FitReport, fit_replays, training_rows


def family_log_loss(report: FitReport) -> dict[str, float]:
    """Each fitting family's out-of-fold log loss (folds by family: fold model ``f`` was fitted
    without family ``f``): its fold model's raw P(grok within budget) on the family's rows at
    their own cadence, each run weighing 1, as :func:`~.training.fit_replays` scores ``C``."""
    if report.fold_by != "family":
        raise ValueError(f"group-robust fitting needs folds by family, got {report.fold_by=!r}")
    out = {}
    for f, model in enumerate(report.fold_models):
        val = [r for r in report.replays if report.fold_of_run[r.run_id] == f]
        raw = copy.copy(model)
        raw.calibration_ = np.zeros((2, 0))  # C is chosen on the uncalibrated P
        X, y, w, _, _ = training_rows(val)
        p = np.clip(raw.predict_proba(X)[:, 1], 1e-6, 1 - 1e-6)
        loss = float(-np.sum(w * (y * np.log(p) + (1 - y) * np.log(1 - p))))
        out[val[0].family] = loss / max(float(w.sum()), 1e-12)
    return out


def loss_weights(losses: Mapping[str, float]) -> dict[str, float]:
    """Each family's loss over the families' mean (they average 1)."""
    mean = float(np.mean(list(losses.values())))
    return {fam: loss / mean for fam, loss in losses.items()}


def fit_group_robust(
    train: Sequence[Replay], extra: Sequence[Replay], options: Mapping[str, Any], say: Say
) -> tuple[GrokForecaster, FitReport, dict[str, Any]]:
    """The fold's model: fitted once, its families weighed by :func:`loss_weights` of that
    fit's out-of-fold losses, fitted again with them at the ``C`` that fit chose (whose
    out-of-fold loss the report keeps; the refit's is ``cv_log_loss_reweighted``)."""
    _, first = fit_replays(train, extra, log=say, **options)
    losses = family_log_loss(first)
    weights = loss_weights(losses)
    say("group-robust family weights: " + ", ".join(f"{f} {w:.2f}" for f, w in weights.items()))
    again = {**options, "C_grid": (first.C,)}  # C stays the one the unweighted fit chose
    model, report = fit_replays(train, extra, family_weight=weights, log=say, **again)
    added = {
        "family_log_loss": losses,
        "family_weights": weights,
        "cv_log_loss_reweighted": report.cv_log_loss,
    }
    report.cv_log_loss = first.cv_log_loss
    return model, report, added


def main() -> None:
    args = parser(__doc__).parse_args()
    variant = {"name": "group_robust", "script": "benchmarks/lofo_group_robust.py"}
    run(args, fit_group_robust, variant)


if __name__ == "__main__":
    main()
