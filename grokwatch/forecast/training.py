"""Fitting on a corpus: replayed runs into feature rows, grouped cross-validation, thresholds.

Runs are replayed by :mod:`grokwatch.forecast.replay`. :func:`fit_corpus` is what
``grokwatch fit`` runs:

1. runs are grouped by configuration (the resolved config without its seeds), so seeds of
   one configuration never sit on both sides of a split (:func:`config_group`);
2. every training run is replayed at its own cadence and at ``extra_cadences`` (by default
   the recipe's, 500 steps) so the model sees coarse histories too; a run and its thinned
   copies always share a fold;
3. rows: every evaluation before ``t_grok`` (after it the question is settled), ``y`` = the run
   reaches ``t_grok`` within its budget, weights so that each run counts once, each row also
   repeated with ``budget_samples`` smaller budgets (:func:`training_rows`: the corpus picks
   budgets from the hyperparameters, which must not leak into the forecast); the time model
   learns ``log(t_grok / t)`` on the original rows of runs that grok, without the budget
   features;
4. grouped K-fold cross-validation chooses ``C`` (weighted out-of-fold log loss), then the
   out-of-fold forecasts at the run's own cadence -- validation runs only -- fix the alert
   threshold (the smallest with a false-alarm rate <= ``far``) and the hopeless threshold (at
   most ``hopeless_miss`` of the runs that grok are ever called hopeless before ``t_grok``);
   the fold models need no time model;
5. the model -- with its time model, the hazard model of :mod:`.hazard` -- is refitted on
   all rows and given those thresholds.

:data:`RECIPE` is how the shipped model is fitted: every default of ``grokwatch fit``, of
``grokwatch evaluate --lofo`` and of the options of :func:`fit_corpus` and :func:`fit_replays`
that it names comes from it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from grokwatch.decision import Forecast, Phase
from grokwatch.forecast.evaluate import family_refs, forecast_signal, metrics
from grokwatch.forecast.features import FEATURE_NAMES
from grokwatch.forecast.forecaster import GrokForecaster
from grokwatch.forecast.lofo import MINIMAL_MEASURES
from grokwatch.forecast.online import MIN_CONFIDENCE
from grokwatch.forecast.replay import (
    NEGATIVE,
    Replay,
    StoredRun,
    choose_alert_threshold,
    replay,
    with_family,
)
from grokwatch.forecast.transfer import family_weights

__all__ = [
    "FOLD_BY",
    "RECIPE",
    "SHIPPED_CAP",
    "FitReport",
    "Recipe",
    "alert_scores",
    "eligible_max",
    "fit_corpus",
    "fit_replays",
    "training_rows",
]

BUDGET_FEATURES = ("log_budget_over_t", "projected_grok_margin")
"""The features that depend on the budget (re-drawn by budget augmentation)."""
_LOG_BUDGET_OVER_T = FEATURE_NAMES.index("log_budget_over_t")
_GROK_MARGIN = FEATURE_NAMES.index("projected_grok_margin")


SHIPPED_CAP: int | None = 300
"""Runs of each family the shipped model is fitted on at most (a seeded sample); ``None``: every
labelled run."""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How the shipped model is fitted, the one place its settings are written down.

    ``grokwatch fit`` (:func:`~.commands.fit_model`) with no options but ``--corpus`` and
    ``--out`` fits with these settings, ``grokwatch evaluate --lofo``
    (:func:`~.commands.evaluate_lofo`) holds families out under them, and :func:`fit_corpus`
    and :func:`fit_replays` default to the ones they take. Every field is also an option of
    those commands, for ablations. A test checks the shipped model's fit report against
    :data:`RECIPE`.
    """

    split: str = "train,eval,heldout"
    """Corpus splits fitted on, comma-separated."""
    measures: tuple[str, ...] | None = MINIMAL_MEASURES
    """The measures of every run the model reads (``None``: all of them)."""
    fold_by: str = "family"
    """Inner cross-validation groups, one of :data:`FOLD_BY`."""
    calibrate: str = "isotonic"
    """``"isotonic"``: P mapped through an isotonic fit on the out-of-fold forecasts."""
    C_grid: tuple[float, ...] = (1.0,)
    """Inverse penalties tried by cross-validation."""
    classifier: str = "trees"
    n_trees: int = 100
    learning_rate: float = 0.1
    cadences: tuple[int, ...] = (500,)
    """Extra evaluation cadences every run is also replayed at."""
    budget_samples: int = 1
    """Smaller budgets drawn for each row (:func:`training_rows`)."""
    cap: int | None = SHIPPED_CAP
    """Runs of each family at most (a seeded sample); ``None``: all."""
    folds: int = 5
    """Folds when grouped by configuration (by family: one a family)."""
    far: float = 0.05
    """Validation false-alarm budget of the alert threshold."""
    seed: int = 0

    @property
    def params(self) -> dict[str, Any]:
        """The :class:`GrokForecaster` hyperparameters of the recipe."""
        return {
            "classifier": self.classifier,
            "n_trees": self.n_trees,
            "learning_rate": self.learning_rate,
        }


RECIPE = Recipe()
"""The shipped model's recipe (docs/forecaster.md, "Commands")."""


def training_rows(
    replays: Sequence[Replay], *, budget_samples: int = 0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``X, y, weight, log_time_to_grok, run_index`` over the rows before ``t_grok``.

    Each replay's rows share a total weight of 1 (so long runs do not dominate);
    ``log_time_to_grok`` is ``log(t_grok / t)`` for runs that grok within budget, else NaN.

    Budget augmentation (``budget_samples`` > 0): the corpus sets each run's budget from its
    hyperparameters (``k / (lr wd)``, a fixed budget when wd = 0), so the budget itself would
    tell a model the run's time scale -- knowledge a user's arbitrary budget does not carry.
    Each row is therefore repeated with budgets ``B'`` drawn log-uniformly between the row's
    step and the run's budget, relabelled "``t_grok <= B'``" (known for every ``B' <= B``),
    with the two budget features recomputed; the time model sees only the original rows.
    """
    rng = np.random.default_rng(seed)
    xs, ys, ws, ts, ri = [], [], [], [], []
    for i, r in enumerate(replays):
        keep = r.steps < r.t_grok if r.t_grok is not None else np.ones(r.steps.size, bool)
        if r.budget is not None:
            keep &= r.steps <= r.budget
        n = int(keep.sum())
        if n == 0:
            continue
        t = np.maximum(r.steps[keep].astype(float), 1.0)
        x = r.X[keep]
        blocks = [(x, np.full(n, int(r.groks)))]
        if budget_samples and r.budget is not None:
            log_bt = np.log(r.budget / t)
            for _ in range(budget_samples):
                new = rng.uniform(0.02, 1.0, n) * log_bt
                xa = x.copy()
                xa[:, _LOG_BUDGET_OVER_T] = new
                xa[:, _GROK_MARGIN] = x[:, _GROK_MARGIN] + (log_bt - new)
                within = r.t_grok is not None and r.groks
                ya = (within & (float(r.t_grok or 0) <= t * np.exp(new))).astype(int)
                blocks.append((xa, ya))
        total = n * len(blocks)
        for j, (xb, yb) in enumerate(blocks):
            xs.append(xb)
            ys.append(yb)
            ws.append(np.full(n, 1.0 / total))
            grok_time = r.groks and r.t_grok and j == 0
            ts.append(np.log(r.t_grok / t) if grok_time else np.full(n, np.nan))
            ri.append(np.full(n, i))
    if not xs:
        empty = np.zeros((0, len(FEATURE_NAMES)))
        return empty, np.zeros(0, int), np.zeros(0), np.zeros(0), np.zeros(0, int)
    return (
        np.concatenate(xs),
        np.concatenate(ys),
        np.concatenate(ws),
        np.concatenate(ts),
        np.concatenate(ri),
    )


# -- alerts and thresholds -----------------------------------------------------------------


def alert_scores(forecasts: Sequence[Forecast]) -> np.ndarray:
    """What an alert reads at each evaluation: the confident P(grok within budget) (``-inf``
    below :data:`~.online.MIN_CONFIDENCE`)."""
    return np.array(
        [f.p_grok_budget if f.confidence >= MIN_CONFIDENCE else -np.inf for f in forecasts],
        dtype=float,
    )


def eligible_max(r: Replay, forecasts: Sequence[Forecast]) -> float:
    """Largest alert score (:func:`alert_scores`) before ``t_grok`` and within the budget."""
    score = alert_scores(forecasts)
    keep = np.ones(r.steps.size, bool)
    if r.t_grok is not None:
        keep &= r.steps < r.t_grok
    if r.budget is not None:
        keep &= r.steps <= r.budget
    return float(score[keep].max()) if keep.any() else -math.inf


@dataclasses.dataclass
class FitReport:
    """What ``grokwatch fit`` found (saved beside the model in its JSON)."""

    n_runs: int
    n_groups: int
    n_rows: int
    folds: int
    C: float
    cv_log_loss: dict[str, float]
    alert_threshold: float
    hopeless_threshold: float
    oof: dict[str, float]
    fold_by: str = "config"
    family_thresholds: dict[str, float] = dataclasses.field(default_factory=dict)
    """Each fitting family's own threshold for the false-alarm budget (out of fold)."""
    family_hopeless: dict[str, float] = dataclasses.field(default_factory=dict)
    """Each fitting family's own hopeless threshold (out of fold)."""
    oof_forecasts: dict[str, list[Forecast]] = dataclasses.field(default_factory=dict, repr=False)
    """Every validation run's out-of-fold forecasts (not saved)."""
    replays: list[Replay] = dataclasses.field(default_factory=list, repr=False)
    fold_models: list[GrokForecaster] = dataclasses.field(default_factory=list, repr=False)
    """The out-of-fold models of the chosen ``C`` (calibrated like the model; not saved)."""
    fold_of_run: dict[str, int] = dataclasses.field(default_factory=dict, repr=False)
    """Run id -> the fold it was validated in (not saved)."""

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in ("oof_forecasts", "replays", "fold_models", "fold_of_run"):
            del out[key]
        return out


def _folds(groups: Sequence[str], k: int, seed: int) -> list[np.ndarray]:
    uniq = sorted(set(groups))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    fold_of = {uniq[j]: i % k for i, j in enumerate(order)}
    return [np.array([fold_of[g] == f for g in groups]) for f in range(k)]


def fit_corpus(
    runs: Iterable[StoredRun],
    *,
    extra_cadences: Sequence[int] = RECIPE.cadences,
    log: Any = None,
    **options: Any,
) -> tuple[GrokForecaster, FitReport]:
    """Fit a :class:`GrokForecaster` on ``runs`` as the module docstring says: replay them
    (at their own cadence and at ``extra_cadences``; families by
    :func:`~.replay.architecture_family`), then :func:`fit_replays`."""
    say = log or (lambda *a: None)
    runs = [r for r in runs if r.labels.get("outcome")]
    base = [with_family(replay(r), r) for r in runs]
    say(f"replayed {len(base)} runs")
    extra = [with_family(replay(r, cadence=c), r) for r in runs for c in extra_cadences]
    return fit_replays(base, extra, log=log, **options)


FOLD_BY = ("config", "family")
"""How :func:`fit_replays` groups its cross-validation folds."""
HOPELESS_MISS = 0.0
"""The share of a fitting family's grokking runs the hopeless threshold may call hopeless before
``t_grok``: none. At 0.05 (before session 7) 15 of 622 held-out grokking runs were called
hopeless at 300 runs per family; at 0, none (``lofo_ablations/cap300_hopeless_strict``)."""


def fit_replays(
    base: Sequence[Replay],
    extra: Sequence[Replay] = (),
    *,
    folds: int = RECIPE.folds,
    fold_by: str = RECIPE.fold_by,
    far: float = RECIPE.far,
    hopeless_miss: float = HOPELESS_MISS,
    C_grid: Sequence[float] = RECIPE.C_grid,
    budget_samples: int = RECIPE.budget_samples,
    seed: int = RECIPE.seed,
    params: Mapping[str, Any] | None = None,
    calibrate: str = RECIPE.calibrate,
    family_weight: Mapping[str, float] | None = None,
    log: Any = None,
) -> tuple[GrokForecaster, FitReport]:
    """Steps 3-5 of the module docstring on runs already replayed: ``base`` at each run's
    own cadence, ``extra`` the thinned copies (same run ids; they share the run's fold and
    the run's weight of 1). The defaults are :data:`RECIPE`'s; ``params`` are the
    :class:`GrokForecaster` hyperparameters (``None``: ``RECIPE.params``).

    ``fold_by="config"`` draws ``folds`` folds grouped by configuration; ``"family"`` makes
    one fold per run family (leave one family out inside the training runs: the thresholds
    then come from forecasts on a family the fold's model never saw, the
    situation of a user's new architecture; with a single family it falls back to
    ``"config"``, and the report says which was used).

    ``calibrate="isotonic"`` maps the probabilities through an isotonic regression of the
    outcome on the out-of-fold P(grok within budget) (rows before ``t_grok`` at each run's
    own cadence, each run weighing 1 within its family and every family the same in total),
    fitted before the thresholds are chosen, so the thresholds and the saved model read
    calibrated probabilities.

    The hopeless threshold keeps the share of grokking runs called hopeless within
    ``hopeless_miss`` on *every* fitting family (the pooled rule let one family -- the
    transformer, held out -- have 41 % of its grokking runs called hopeless).

    ``family_weight`` (family -> factor, 1 for a family not named) multiplies the weight of
    each family's rows in fitting the fold models and the model, not in scoring them: the hook
    of ablations that weigh families unequally (``benchmarks/lofo_group_robust.py``)."""
    say = log or (lambda *a: None)
    if fold_by not in FOLD_BY:
        raise ValueError(f"fold_by must be one of {FOLD_BY}, got {fold_by=!r}")
    if calibrate not in ("none", "isotonic"):
        raise ValueError(f"calibrate must be 'none' or 'isotonic', got {calibrate=!r}")
    if not base:
        raise ValueError("no labelled runs to fit on")
    if family_weight is not None and not all(
        math.isfinite(v) and v >= 0 for v in family_weight.values()
    ):
        raise ValueError(f"family_weight must be finite and >= 0, got {family_weight=}")
    groups = [r.group for r in base]
    families = sorted({r.family for r in base})
    if fold_by == "family" and len(families) < 2:
        say(f"one family ({families}): folds grouped by configuration instead")
        fold_by = "config"
    if fold_by == "family":
        k = len(families)
        masks = [np.array([r.family == fam for r in base]) for fam in families]
    else:
        k = max(2, min(folds, len(set(groups))))
        masks = _folds(groups, k, seed)
    fold_of_run = {
        r.run_id: f
        for f, m in enumerate(masks)
        for r, inside in zip(base, m, strict=True)
        if inside
    }

    def rows(replays: Sequence[Replay], augment: bool = True) -> tuple[np.ndarray, ...]:
        return training_rows(replays, budget_samples=budget_samples if augment else 0, seed=seed)

    def fitting_rows(replays: Sequence[Replay]) -> tuple[np.ndarray, ...]:
        X, y, w, t, ri = rows(replays)
        if family_weight is not None and ri.size:
            w = w * np.array([family_weight.get(r.family, 1.0) for r in replays])[ri]
        return X, y, w, t, ri

    time_features = [i for i, n in enumerate(FEATURE_NAMES) if n not in BUDGET_FEATURES]
    settings = {"time_features": time_features, **(RECIPE.params if params is None else params)}

    everything = [*base, *extra]
    scale = len(base) / len(everything)  # a run and its thinned copies weigh 1 together
    # model selection: weighted out-of-fold log loss on the native cadence
    losses: dict[str, float] = {}
    oof_models: dict[float, list[GrokForecaster]] = {}
    for C in C_grid:
        total, weight = 0.0, 0.0
        oof_models[C] = []
        for f in range(k):
            train = [r for r in everything if fold_of_run[r.run_id] != f]
            val = [r for r in base if fold_of_run[r.run_id] == f]
            X, y, w, _, _ = fitting_rows(train)
            model = GrokForecaster(C=C, **settings).fit(X, y, sample_weight=w * scale)
            oof_models[C].append(model)
            Xv, yv, wv, _, _ = rows(val, augment=False)
            if Xv.shape[0] == 0:
                continue
            p = np.clip(model.predict_proba(Xv)[:, 1], 1e-6, 1 - 1e-6)
            total += float(-np.sum(wv * (yv * np.log(p) + (1 - yv) * np.log(1 - p))))
            weight += float(wv.sum())
        losses[str(C)] = total / max(weight, 1e-12)
        say(f"C={C}: out-of-fold log loss {losses[str(C)]:.4f}")
    best_C = min(C_grid, key=lambda c: losses[str(c)])
    calibration = np.zeros((2, 0))
    if calibrate == "isotonic":
        calibration = _isotonic_map(
            [(oof_models[best_C][f], [r for r in base if fold_of_run[r.run_id] == f])
             for f in range(k)]
        )  # fmt: skip
        for m in oof_models[best_C]:
            m.calibration_ = calibration
        say(f"isotonic calibration: {calibration.shape[1]} knots")
    # thresholds from the out-of-fold forecasts of the chosen C
    neg_max: dict[str, list[float]] = {}
    pos_min: dict[str, list[float]] = {}
    oof_forecasts: dict[str, list[Forecast]] = {}
    for f in range(k):
        model = oof_models[best_C][f]
        for r in base:
            if fold_of_run[r.run_id] != f:
                continue
            fc = r.forecasts(model)
            oof_forecasts[r.run_id] = fc
            if r.outcome in NEGATIVE:
                neg_max.setdefault(r.family, []).append(eligible_max(r, fc))
            if r.groks and r.t_grok is not None:
                before = [
                    fo.p_grok_budget
                    for s, fo in zip(r.steps, fc, strict=True)
                    if s < r.t_grok
                    and fo.confidence >= MIN_CONFIDENCE
                    # every point after memorizing, the grokking phase's too (online the
                    # flag is never raised there: the threshold errs on the safe side)
                    and fo.phase is not Phase.MEMORIZING
                ]
                pos_min.setdefault(r.family, []).append(min(before) if before else math.inf)
    per_family = {f: choose_alert_threshold(v, far) for f, v in sorted(neg_max.items())}
    alert = choose_alert_threshold([v for vs in neg_max.values() for v in vs], far)
    per_family_hopeless = {
        f: hopeless_threshold(v, hopeless_miss, alert) for f, v in sorted(pos_min.items())
    }
    # at most the miss share on every family (one family: the pooled rule)
    hopeless = min(per_family_hopeless.values(), default=0.0)
    oof = _oof_summary(base, oof_forecasts, alert)
    say(f"alert threshold {alert:.3f} (validation FAR <= {far}), hopeless {hopeless:.3f}")
    X, y, w, t, _ = fitting_rows(everything)
    model = GrokForecaster(C=best_C, **settings).fit(
        X, y, sample_weight=w * scale, log_time_to_grok=t
    )
    model.alert_threshold_ = alert
    model.hopeless_threshold_ = hopeless
    model.calibration_ = calibration
    report = FitReport(
        n_runs=len(base),
        n_groups=len(set(groups)),
        n_rows=int(X.shape[0]),
        folds=k,
        C=best_C,
        cv_log_loss=losses,
        alert_threshold=alert,
        hopeless_threshold=hopeless,
        oof=oof,
        fold_by=fold_by,
        family_thresholds=per_family,
        family_hopeless=per_family_hopeless,
        oof_forecasts=oof_forecasts,
        replays=list(base),
        fold_models=list(oof_models[best_C]),
        fold_of_run=fold_of_run,
    )
    return model, report


def hopeless_threshold(lowest: Sequence[float], miss: float, alert: float) -> float:
    """The hopeless threshold that calls at most ``miss`` of the grokking runs hopeless before
    ``t_grok`` (``lowest``: each run's smallest eligible P before ``t_grok``), in [0, alert]."""
    finite = np.sort([v for v in lowest if math.isfinite(v)])
    if not finite.size:
        return 0.0
    allowed = math.floor(miss * len(lowest))
    value = float(np.nextafter(finite[min(allowed, finite.size - 1)], -np.inf))
    return min(max(value, 0.0), alert)


def _isotonic_map(folds: Sequence[tuple[GrokForecaster, Sequence[Replay]]]) -> np.ndarray:
    """Knots ``(2, K)`` of the isotonic regression of ``y`` on each fold model's P for its
    validation runs' rows (each run weighing 1 within its family, every family the same in
    total: a family's share of grokking runs is its own), made strictly increasing by a 1e-6 slope
    so that calibrated forecasts keep the raw ranking."""
    from sklearn.isotonic import IsotonicRegression

    ps, ys, ws = [], [], []
    runs = [r for _, val in folds for r in val]
    family_weight = dict(
        zip((r.run_id for r in runs), family_weights([r.family for r in runs]), strict=True)
    )
    for model, val in folds:
        X, y, w, _, ri = training_rows(val)
        if X.shape[0]:
            ps.append(model.predict_proba(X)[:, 1])
            ys.append(y)
            ws.append(w * np.array([family_weight[val[i].run_id] for i in ri]))
    if not ps:
        return np.zeros((2, 0))
    p, y, w = np.concatenate(ps), np.concatenate(ys), np.concatenate(ws)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(p, y, sample_weight=w)
    x = np.concatenate([[0.0], np.asarray(iso.X_thresholds_, float), [1.0]])
    v = np.asarray(iso.predict(x), float)
    x, idx = np.unique(x, return_index=True)
    v = np.clip(v[idx] * (1 - 1e-6) + 1e-6 * x, 0.0, 1.0)
    return np.stack([x, v])


def _oof_summary(
    base: Sequence[Replay], forecasts: Mapping[str, list[Forecast]], alert: float
) -> dict[str, float]:
    """The evaluation's metrics (:func:`.evaluate.metrics`) on the out-of-fold forecasts."""
    sig = forecast_signal(forecasts, alert)
    runs = [r for r in base if r.run_id in forecasts]
    out = metrics(runs, sig, alert, family_refs(runs))
    return {k: float(v) for k, v in out.items() if isinstance(v, int | float)}
