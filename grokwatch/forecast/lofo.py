"""Leave one family out: forecasts judged on run families the model never saw.

For every family F of the corpus, a forecaster is fitted on the other families only -- their
grouped cross-validation picks ``C``, the alert and hopeless thresholds and the residual
quantiles (:func:`~.training.fit_replays`), and the baselines' thresholds come from them too
-- and then evaluated on every run of F (:func:`~.evaluate.evaluate`: recall, false alarms,
lead, AUROC, ``t_grok`` error, interval coverage, every baseline), plus

- **calibration**: expected calibration error and the reliability bins of P(grok within
  budget) (:mod:`.calibration`);
- **hopeless must mean hopeless**: the share of F's grokking runs ever called hopeless before
  ``t_grok``, and before they had even memorized;
- **minimal users**: the same model on F's runs reduced to what a loop reporting only loss
  and accuracy sends (:data:`MINIMAL_MEASURES`; confidence drops, the quality is reported
  apart);
- **how sure each goal cell is**: 95 % bootstrap intervals over F's runs of the numbers the
  goals read, and whether the sample decides each goal (:func:`goal_intervals`,
  :func:`goals_decided`).

Runs of a split named in ``holdout_splits`` (the corpus's held-out ops/moduli, ``heldout``)
are never fitted on; they are evaluated with their family, and reported as their own group
too. :func:`lofo_folds` is the only place that splits, :func:`run_lofo` takes the fitting and
evaluating functions as arguments (the leakage test checks what each of them receives).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from grokwatch.decision import Forecast
from grokwatch.forecast.calibration import forecast_rows, reliability
from grokwatch.forecast.evaluate import (
    OURS,
    evaluate,
    family_refs,
    forecast_signal,
    matched_threshold,
    metrics,
)
from grokwatch.forecast.forecaster import GrokForecaster
from grokwatch.forecast.replay import NEGATIVE, POSITIVE, Replay, StoredRun

__all__ = [
    "BOOTSTRAP_DRAWS",
    "GOALS",
    "GOAL_REGIONS",
    "INTERVAL_KEYS",
    "MINIMAL_KEYS",
    "MINIMAL_MEASURES",
    "LofoFold",
    "family_summary",
    "forecasts_of",
    "format_ablations",
    "format_lofo",
    "goal_intervals",
    "goal_numbers",
    "goals_decided",
    "lofo_folds",
    "macro_average",
    "minimal_run",
    "minimal_summary",
    "outcome_draws",
    "percentile_interval",
    "run_lofo",
    "summary_line",
]

MINIMAL_MEASURES = ("train_accuracy", "test_accuracy", "train_loss", "test_loss")
"""What a training loop that reports only its losses and accuracies sends."""

GOALS: Mapping[str, str] = {
    "recall": "recall >= 0.90 with FAR <= 0.05 at the calibrated threshold",
    "lead_gap": "median lead >= 0.5 of the gap",
    "auroc25": "AUROC >= 0.95 at 25 % of the gap",
    "coverage": "80 % interval coverage within 0.7-0.9",
    "ece": "expected calibration error <= 0.05",
    "ahead": "recall and lead (misses count 0) above every baseline's at FAR <= 5 %",
}
"""The issue's goals, checked on every held-out family (:func:`family_summary`)."""

BOOTSTRAP_DRAWS = 1000
"""Resamples of a held-out family's runs behind each 95 % interval (:func:`goal_intervals`)."""
INTERVAL_KEYS = ("recall", "far", "recall_far05", "lead_gap", "auroc25", "coverage", "ece")
"""The numbers the goals read, each given a bootstrap interval."""


@dataclasses.dataclass(frozen=True)
class LofoFold:
    """One held-out family: what is fitted on and what is evaluated."""

    family: str
    train: tuple[Replay, ...]
    """Runs of every other family at their own cadence (fitting and calibration)."""
    extra: tuple[Replay, ...]
    """Their thinned copies (fitting only)."""
    test: tuple[Replay, ...]
    """Every run of ``family``, held-out splits included."""


def lofo_folds(
    base: Sequence[Replay],
    extra: Sequence[Replay] = (),
    *,
    holdout_splits: Iterable[str] = ("heldout",),
) -> list[LofoFold]:
    """One :class:`LofoFold` per family, in name order (needs >= 2 families)."""
    held = set(holdout_splits)
    families = sorted({r.family for r in base})
    if len(families) < 2:
        raise ValueError(f"leave one family out needs >= 2 families, got {families}")
    folds = []
    for fam in families:
        train = tuple(r for r in base if r.family != fam and r.split not in held)
        ids = {r.run_id for r in train}
        folds.append(
            LofoFold(
                family=fam,
                train=train,
                extra=tuple(r for r in extra if r.run_id in ids),
                test=tuple(r for r in base if r.family == fam),
            )
        )
    return folds


Fit = Callable[[Sequence[Replay], Sequence[Replay]], GrokForecaster]
"""``fit(train, extra)`` -> a fitted forecaster with its thresholds."""
Evaluate = Callable[[GrokForecaster, Sequence[Replay], Sequence[Replay]], dict[str, Any]]
"""``evaluate(model, test, calibration)`` -> :func:`~.evaluate.evaluate`'s result."""


@dataclasses.dataclass(frozen=True)
class _View:
    """A stored run with only some of its measures (what a minimal user reports)."""

    run: StoredRun
    keep: tuple[str, ...]

    @property
    def steps(self) -> np.ndarray:
        return self.run.steps

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.run.columns if c in self.keep)

    @property
    def values(self) -> np.ndarray:
        idx = [j for j, c in enumerate(self.run.columns) if c in self.keep]
        return np.asarray(self.run.values)[:, idx]

    run_id = property(lambda self: self.run.run_id)
    family = property(lambda self: self.run.family)
    split = property(lambda self: self.run.split)
    config = property(lambda self: self.run.config)
    labels = property(lambda self: self.run.labels)


def minimal_run(run: StoredRun, measures: Sequence[str] = MINIMAL_MEASURES) -> StoredRun:
    """``run`` as a loop reporting only ``measures`` would have sent it."""
    return _View(run, tuple(measures))  # type: ignore[return-value]


def forecasts_of(model: GrokForecaster, runs: Sequence[Replay]) -> dict[str, list[Forecast]]:
    return {r.run_id: r.forecasts(model) for r in runs}


def _hopeless(
    runs: Sequence[Replay], forecasts: Mapping[str, Sequence[Forecast]]
) -> dict[str, Any]:
    """Grokking runs ever called hopeless before ``t_grok``, and before ``t_mem``; and what
    the call is worth: the runs that never grok (memorization, confusion) called hopeless
    within their budget, and how early (first call over the budget, median)."""

    def calls(r: Replay) -> list[int]:
        return [int(s) for s, f in zip(r.steps, forecasts[r.run_id], strict=True) if f.hopeless]

    pos = [r for r in runs if r.outcome in POSITIVE and r.t_grok is not None]
    ever, early = [], []
    for r in pos:
        before = [s for s in calls(r) if s < (r.t_grok or 0)]
        ever.append(bool(before))
        early.append(any(r.t_mem is None or s < r.t_mem for s in before))
    first: list[float] = []  # each called negative's first call, over its budget
    neg = [r for r in runs if r.outcome in NEGATIVE]
    for r in neg:
        within = [s for s in calls(r) if r.budget is None or s <= r.budget]
        if within:
            first.append(within[0] / r.budget if r.budget else math.nan)
    n = len(pos)
    return {
        "hopeless_grokking": float(np.mean(ever)) if n else math.nan,
        "hopeless_before_memorized": float(np.mean(early)) if n else math.nan,
        "n_hopeless_grokking": int(sum(ever)),
        "hopeless_negative": len(first) / len(neg) if neg else math.nan,
        "hopeless_first_budget": float(np.nanmedian(first)) if first else math.nan,
    }


def family_summary(
    runs: Sequence[Replay],
    forecasts: Mapping[str, Sequence[Forecast]],
    result: Mapping[str, Any],
    *,
    group: str = "overall",
) -> dict[str, Any]:
    """The headline numbers of one held-out family (calibrated threshold unless named)."""
    sigs = result["groups"][group]["signals"]
    ours, matched = sigs[OURS]["calibrated"], sigs[OURS]["matched"]
    p, y, w = forecast_rows(runs, forecasts)
    rel = reliability(p, y, w)
    out: dict[str, Any] = {
        "n_runs": len(runs),
        "n_grokking": ours["n_grokking"],
        "n_negative": ours["n_negative"],
        "threshold": ours["threshold"],
        "recall": ours["recall"],
        "far": ours["false_alarm_rate"],
        "lead_gap": ours["median_lead_fraction"],
        "lead_gap_all": ours["median_lead_fraction_all"],
        "lead_steps": ours["median_lead_steps"],
        "recall_far05": matched["recall"],
        "far_far05": matched["false_alarm_rate"],
        "lead_gap_all_far05": matched["median_lead_fraction_all"],
        "threshold_far05": matched["threshold"],
        "auroc10": ours["auroc_10"],
        "auroc25": ours["auroc_25"],
        "auroc50": ours["auroc_50"],
        "t_grok_error": ours.get("t_grok_median_rel_error", math.nan),
        "coverage": ours.get("t_grok_interval_coverage", math.nan),
        "ece": rel.ece,
        "reliability": rel.to_json(),
        **_hopeless(runs, forecasts),
    }
    base = {
        name: {
            "recall": e["matched"]["recall"],
            "far": e["matched"]["false_alarm_rate"],
            "lead_gap_all": e["matched"]["median_lead_fraction_all"],
            "threshold": e["matched"]["threshold"],
            "auroc25": e["matched"]["auroc_25"],
        }
        for name, e in sigs.items()
        if name != OURS
    }
    out["baselines_far05"] = base
    out["ahead"] = (
        all(
            out["recall_far05"] > b["recall"] and out["lead_gap_all_far05"] > b["lead_gap_all"]
            for b in base.values()
        )
        if base
        else None
    )
    out["goals"] = {
        "recall": out["recall"] >= 0.9 and out["far"] <= 0.05,
        "lead_gap": out["lead_gap"] >= 0.5,
        "auroc25": out["auroc25"] >= 0.95,
        "coverage": 0.7 <= out["coverage"] <= 0.9,
        "ece": out["ece"] <= 0.05,
        "ahead": out["ahead"],
    }
    return out


def outcome_draws(runs: Sequence[Replay], draws: int, seed: int = 0) -> Iterator[list[Replay]]:
    """``draws`` samples of ``runs`` drawn with replacement, the grokking runs and the
    negatives each to their own count (the rest, e.g. runs that generalize without a plateau,
    too), from a generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    strata = [
        [r for r in runs if r.outcome in POSITIVE],
        [r for r in runs if r.outcome in NEGATIVE],
        [r for r in runs if r.outcome not in POSITIVE + NEGATIVE],
    ]
    for _ in range(draws):
        yield [g[i] for g in strata if g for i in rng.integers(0, len(g), len(g))]


def goal_numbers(
    runs: Sequence[Replay], forecasts: Mapping[str, list[Forecast]], threshold: float
) -> dict[str, float]:
    """The numbers the goals read (:data:`INTERVAL_KEYS`) on ``runs``, computed as
    :func:`family_summary` computes them, at ``threshold`` (recall at FAR <= 5 % at its own)."""
    sig = forecast_signal(forecasts, threshold)
    refs = family_refs(runs)
    at = metrics(runs, sig, threshold, refs)
    matched = metrics(runs, sig, matched_threshold(runs, sig), refs)
    p, y, w = forecast_rows(runs, forecasts)
    return {
        "recall": float(at["recall"]),
        "far": float(at["false_alarm_rate"]),
        "recall_far05": float(matched["recall"]),
        "lead_gap": float(at["median_lead_fraction"]),
        "auroc25": float(at["auroc_25"]),
        "coverage": float(at.get("t_grok_interval_coverage", math.nan)),
        "ece": reliability(p, y, w).ece if p.size else math.nan,
    }


def percentile_interval(values: Sequence[float], draws: int) -> list[float] | None:
    """The 95 % percentile interval of the finite ``values`` of ``draws`` draws; ``None``
    when fewer than 95 % of the draws gave a finite value."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < 0.95 * draws:
        return None
    return [float(q) for q in np.percentile(v, [2.5, 97.5])]


def goal_intervals(
    runs: Sequence[Replay],
    forecasts: Mapping[str, list[Forecast]],
    threshold: float,
    *,
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = 0,
) -> dict[str, list[float] | None]:
    """95 % percentile intervals of the numbers the goals read (:data:`INTERVAL_KEYS`) on one
    held-out family: its runs are drawn again ``draws`` times (:func:`outcome_draws`) and
    each number is computed again on every draw (:func:`goal_numbers`), at the same
    ``threshold`` (the one fixed before the family was seen). Nothing is refitted: the
    intervals show how much the numbers move with the sample of runs, not with the fit.
    ``None`` for a number that is undefined on too many draws (fewer than 95 % finite)."""
    values: dict[str, list[float]] = {k: [] for k in INTERVAL_KEYS}
    for sample in outcome_draws(runs, draws, seed):
        for k, v in goal_numbers(sample, forecasts, threshold).items():
            values[k].append(v)
    return {k: percentile_interval(vals, draws) for k, vals in values.items()}


GOAL_REGIONS: Mapping[str, Mapping[str, tuple[float, float]]] = {
    "recall": {"recall": (0.9, math.inf), "far": (-math.inf, 0.05)},
    "lead_gap": {"lead_gap": (0.5, math.inf)},
    "auroc25": {"auroc25": (0.95, math.inf)},
    "coverage": {"coverage": (0.7, 0.9)},
    "ece": {"ece": (-math.inf, 0.05)},
}
"""Where each goal's numbers must lie (``ahead`` compares with the baselines: no interval)."""


def goals_decided(intervals: Mapping[str, Sequence[float] | None]) -> dict[str, bool | None]:
    """For each goal of :data:`GOAL_REGIONS`, whether the family's sample decides it: every
    number the goal reads has its 95 % interval wholly inside its region (met whatever the
    draw), or one of them wholly outside it (not met whatever the draw). ``False``: the
    interval reaches across the goal's line; ``None``: a number without an interval."""
    out: dict[str, bool | None] = {}
    for goal, region in GOAL_REGIONS.items():
        spans = {k: span for k in region if (span := intervals.get(k)) is not None}
        if len(spans) < len(region):
            out[goal] = None
            continue
        inside = all(spans[k][0] >= a and spans[k][1] <= b for k, (a, b) in region.items())
        outside = any(spans[k][1] < a or spans[k][0] > b for k, (a, b) in region.items())
        out[goal] = inside or outside
    return out


def macro_average(families: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Mean over families of every numeric headline (NaN-free entries only)."""
    keys = [
        k
        for k, v in next(iter(families.values())).items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    out = {}
    for k in keys:
        vals = [float(f[k]) for f in families.values() if math.isfinite(float(f[k]))]
        out[k] = float(np.mean(vals)) if vals else math.nan
    return out


def run_lofo(
    folds: Sequence[LofoFold],
    *,
    fit: Fit,
    evaluate_fold: Evaluate = evaluate,
    minimal: Mapping[str, Replay] | None = None,
    views: Mapping[str, Mapping[str, Replay]] | None = None,
    rename: Callable[[Replay], Replay] = lambda r: r,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fit and evaluate every fold; per family the :func:`family_summary`, the minimal-user
    summary (``minimal``: run id -> the run's minimal replay) and the evaluation's tables
    (without the threshold curves), then the macro average over families. ``views`` (name
    -> run id -> replay; e.g. the runs thinned to the agent's default cadence) are evaluated
    with the same fold models, each under ``result["views"][name]``.

    ``rename`` maps a test run to the group it is reported in (the corpus's held-out split
    gets its own row); the family's headline is over all its runs."""
    say = log or (lambda _: None)
    families: dict[str, Any] = {}
    details: dict[str, Any] = {}
    models: dict[str, GrokForecaster] = {}
    seen: dict[str, dict[str, Any]] = {name: {} for name in views or {}}
    for fold in folds:
        say(f"-- held out: {fold.family} ({len(fold.test)} runs); fitting on {len(fold.train)}")
        model = fit(fold.train, fold.extra)
        models[fold.family] = model
        test = [rename(r) for r in fold.test]
        result = evaluate_fold(model, test, fold.train)
        forecasts = forecasts_of(model, test)
        summary = family_summary(test, forecasts, result)
        summary["intervals"] = goal_intervals(test, forecasts, summary["threshold"])
        summary["goals_decided"] = goals_decided(summary["intervals"])
        if minimal is not None:
            small = [rename(minimal[r.run_id]) for r in fold.test if r.run_id in minimal]
            summary["minimal"] = minimal_summary(model, small)
        families[fold.family] = summary
        details[fold.family] = {
            "model": {
                "alert_threshold": model.alert_threshold_,
                "hopeless_threshold": model.hopeless_threshold_,
                "fit_report": getattr(model, "fit_report_", {}),
            },
            "groups": {
                g: {k: v for k, v in info.items() if k != "curves"}
                for g, info in result["groups"].items()
            },
        }
        say(summary_line(fold.family, summary))
        for name, view in (views or {}).items():
            test_v = [rename(view[r.run_id]) for r in fold.test if r.run_id in view]
            res_v = evaluate_fold(model, test_v, fold.train)
            seen[name][fold.family] = family_summary(test_v, forecasts_of(model, test_v), res_v)
            say(f"  {name}: " + summary_line(fold.family, seen[name][fold.family]))
    return {
        "families": families,
        "macro": macro_average(families),
        "views": {n: {"families": f, "macro": macro_average(f)} for n, f in seen.items() if f},
        "details": details,
        "models": models,
    }


MINIMAL_KEYS = (
    "recall",
    "far",
    "recall_far05",
    "lead_gap",
    "auroc10",
    "auroc25",
    "auroc50",
    "coverage",
    "ece",
    "hopeless_grokking",
    "mean_confidence",
)
"""The minimal users' numbers (:func:`minimal_summary`), as their table shows them."""


def minimal_summary(model: GrokForecaster, runs: Sequence[Replay]) -> dict[str, Any]:
    """Our forecast alone on minimal replays (baselines need the measures they lack)."""
    if not runs:
        return {}
    result = evaluate(model, runs, (), baselines=())
    forecasts = forecasts_of(model, runs)
    full = family_summary(runs, forecasts, result)
    conf = [f.confidence for fc in forecasts.values() for f in fc]
    out = {k: full[k] for k in (*MINIMAL_KEYS, "lead_gap_all") if k != "mean_confidence"}
    out["mean_confidence"] = float(np.mean(conf)) if conf else math.nan
    return out


def summary_line(family: str, s: Mapping[str, Any]) -> str:
    """One line of a family's headline numbers."""
    return (
        f"{family}: recall {s['recall']:.2f} at FAR {s['far']:.2f} (threshold "
        f"{s['threshold']:.3f}), recall {s['recall_far05']:.2f} at FAR <= 5 %, lead "
        f"{s['lead_gap']:.2f} of the gap, AUROC@25% {s['auroc25']:.2f}, t_grok error "
        f"{s['t_grok_error']:.2f}, coverage {s['coverage']:.2f}, ECE {s['ece']:.3f}, "
        f"hopeless grokkers {s['hopeless_grokking']:.2f}"
    )


def _f(v: Any, fmt: str = "{:.2f}") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, bool):
        return "met" if v else "**not met**"
    return fmt.format(v)


HEADLINE = (
    ("recall", "recall"),
    ("far", "FAR"),
    ("recall_far05", "recall at FAR ≤ 5 %"),
    ("lead_gap", "lead (× gap)"),
    ("auroc10", "AUROC 10 %"),
    ("auroc25", "AUROC 25 %"),
    ("auroc50", "AUROC 50 %"),
    ("t_grok_error", "t_grok error"),
    ("coverage", "80 % coverage"),
    ("ece", "ECE"),
    ("hopeless_grokking", "grokkers called hopeless"),
    ("hopeless_before_memorized", "… before memorizing"),
)


def _headline(result: Mapping[str, Any]) -> str:
    """The headline table: one row per held-out family, then the macro average."""
    lines = [
        "| held-out family | runs (grokking / not) | threshold | "
        + " | ".join(h for _, h in HEADLINE)
        + " |"
    ]
    lines.append("|---" * (len(HEADLINE) + 3) + "|")
    for name, s in result["families"].items():
        cells = [_f(s.get(k), "{:.3f}" if k == "ece" else "{:.2f}") for k, _ in HEADLINE]
        lines.append(
            f"| {name} | {s['n_runs']} ({s['n_grokking']} / {s['n_negative']}) | "
            f"{_f(s['threshold'], '{:.3f}')} | " + " | ".join(cells) + " |"
        )
    macro = result.get("macro") or {}
    if macro:
        cells = [_f(macro.get(k), "{:.3f}" if k == "ece" else "{:.2f}") for k, _ in HEADLINE]
        lines.append("| **macro average** | | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean(values: Iterable[Any]) -> float:
    """The mean of the finite ``values`` (NaN when there are none)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(vals)) if vals else math.nan


def _baselines(result: Mapping[str, Any]) -> list[str]:
    """Lines of a table: ours against every baseline at FAR <= 5 % on each held-out family
    (the FAR our threshold reaches beside it), then the macro average over the families (a
    baseline's: over the families that have it); none when ``result`` holds no baselines."""
    fams: Mapping[str, Any] = result["families"]
    names = sorted({b for s in fams.values() for b in s.get("baselines_far05", {})})
    if not names:
        return []
    lines = [
        "",
        "Recall and median lead over all grokking runs (× gap, misses count 0), every "
        "signal at its own threshold with FAR ≤ 5 % on the held-out family (the FAR "
        "grokwatch's threshold reaches beside it):",
        "",
        "| held-out family | **grokwatch** | FAR | " + " | ".join(names) + " |",
        "|---" * (len(names) + 3) + "|",
    ]

    def row(name: str, ours: Mapping[str, Any], base: Mapping[str, Any]) -> str:
        cells = [f"{_f(ours.get('recall_far05'))} / {_f(ours.get('lead_gap_all_far05'))}"]
        cells.append(_f(ours.get("far_far05")))
        cells += [
            f"{_f(base[n]['recall'])} / {_f(base[n]['lead_gap_all'])}" if n in base else "—"
            for n in names
        ]
        return f"| {name} | " + " | ".join(cells) + " |"

    for name, s in fams.items():
        lines.append(row(name, s, s.get("baselines_far05", {})))
    macro = result.get("macro") or {}
    if macro:
        base = {}
        for n in names:
            have = [b[n] for s in fams.values() if n in (b := s.get("baselines_far05", {}))]
            base[n] = {k: _mean(b[k] for b in have) for k in ("recall", "lead_gap_all")}
        lines.append(row("**macro average**", macro, base))
    return lines


def _minimal(fams: Mapping[str, Any]) -> list[str]:
    """Lines of the minimal users' table (the :data:`MINIMAL_KEYS` a ``lofo.json`` has);
    one sentence instead when every number it shares with the headline table is the same
    there (a model that reads only loss and accuracy), with the mean confidence."""
    minimal = {n: s["minimal"] for n, s in fams.items() if s.get("minimal")}
    if not minimal:
        return []
    keys = [k for k in MINIMAL_KEYS if any(k in m for m in minimal.values())]

    def cell(s: Mapping[str, Any], k: str) -> str:
        return _f(s.get(k), "{:.3f}" if k == "ece" else "{:.2f}")

    label = dict(HEADLINE) | {"mean_confidence": "mean confidence"}
    shared = [k for k in keys if k != "mean_confidence"]
    if all(cell(m, k) == cell(fams[n], k) for n, m in minimal.items() for k in shared):
        confidence = ", ".join(f"{n} {cell(m, 'mean_confidence')}" for n, m in minimal.items())
        return [
            "",
            "Minimal users (only train/test loss and accuracy reported), same models: every "
            f"number they share with the headline table ({', '.join(label[k] for k in shared)}) "
            "is the same there, cell for cell: the models read nothing else. Mean confidence: "
            f"{confidence}.",
        ]
    return [
        "",
        "Minimal users (only train/test loss and accuracy reported), same models:",
        "",
        "| held-out family | " + " | ".join(label[k] for k in keys) + " |",
        "|---" * (len(keys) + 1) + "|",
        *(f"| {n} | " + " | ".join(cell(m, k) for k in keys) + " |" for n, m in minimal.items()),
    ]


def _intervals(fams: Mapping[str, Any]) -> list[str]:
    """Lines of the 95 % intervals' table (:func:`goal_intervals`), with what the ``?`` of
    the goals' table means; none for a ``lofo.json`` written before the intervals were."""
    if not any(s.get("intervals") for s in fams.values()):
        return []
    label = dict(HEADLINE)

    def cell(span: Sequence[float] | None, k: str) -> str:
        fmt = "{:.3f}" if k == "ece" else "{:.2f}"
        return "—" if span is None else f"[{fmt.format(span[0])}, {fmt.format(span[1])}]"

    return [
        "",
        f"`?`: the sample does not decide the cell. Its runs drawn again {BOOTSTRAP_DRAWS} times "
        "(grokking runs and negatives each to their own count, the same models and threshold), "
        "the 95 % interval of a number the goal reads reaches across the goal's line:",
        "",
        "| held-out family | " + " | ".join(label[k] for k in INTERVAL_KEYS) + " |",
        "|---" * (len(INTERVAL_KEYS) + 1) + "|",
        *(
            f"| {name} | "
            + " | ".join(cell((s.get("intervals") or {}).get(k), k) for k in INTERVAL_KEYS)
            + " |"
            for name, s in fams.items()
        ),
    ]


def format_lofo(result: Mapping[str, Any]) -> str:
    """The leave-one-family-out tables (markdown) of a :func:`run_lofo` result or of the
    ``lofo.json`` written from it: headline, goals, baselines at FAR <= 5 % (with the macro
    average), the same headline and baselines for every view, minimal users and, when
    present, the shipped model on the families it never saw."""
    fams: Mapping[str, Any] = result["families"]
    lines = [_headline(result)]
    lines += ["", "| held-out family | " + " | ".join(GOALS) + " |"]
    lines.append("|---" * (len(GOALS) + 1) + "|")
    for name, s in fams.items():
        decided = s.get("goals_decided") or {}
        cells = [_f(s["goals"][g]) + ("?" if decided.get(g) is False else "") for g in GOALS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += _intervals(fams)
    lines += _baselines(result)
    for view, entry in (result.get("views") or {}).items():
        lines += ["", f"Every held-out run thinned ({view}), the same models:", ""]
        lines.append(_headline(entry))
        lines += _baselines(entry)
    lines += _minimal(fams)
    shipped = result.get("shipped") or {}
    if shipped.get("families"):
        keys = ("recall", "far", "recall_far05", "lead_gap", "auroc25", "coverage", "ece")
        lines += [
            "",
            f"The shipped model (fitted on {', '.join(shipped.get('fitted_on', []))}) on the "
            "families it never saw:",
            "",
            "| family | " + " | ".join(keys) + " | minimal users' recall |",
            "|---" * (len(keys) + 2) + "|",
        ]
        rows = [(name, m) for name, m in shipped["families"].items()]
        for view, entry in (shipped.get("views") or {}).items():
            rows += [(f"{name}, {view}", m) for name, m in entry["families"].items()]
        for name, m in rows:
            cells = [_f(m.get(k), "{:.3f}" if k == "ece" else "{:.2f}") for k in keys]
            cells.append(_f((m.get("minimal") or {}).get("recall")))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


ABLATION_KEYS = (
    ("recall", "recall"),
    ("far", "FAR"),
    ("recall_far05", "recall at FAR ≤ 5 %"),
    ("lead_gap", "lead (× gap)"),
    ("auroc25", "AUROC 25 %"),
    ("coverage", "coverage"),
    ("ece", "ECE"),
    ("hopeless_grokking", "grokkers called hopeless"),
)


def format_ablations(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per variant and held-out family (and the macro average): what each change
    of the method does to the leave-one-family-out numbers (``results``: variant name ->
    a ``lofo.json``)."""
    lines = ["| variant | held-out family | " + " | ".join(h for _, h in ABLATION_KEYS) + " |"]
    lines.append("|---" * (len(ABLATION_KEYS) + 2) + "|")
    for variant, result in results.items():
        rows = [*result["families"].items(), ("**macro**", result.get("macro") or {})]
        for fam, s in rows:
            cells = [_f(s.get(k), "{:.3f}" if k == "ece" else "{:.2f}") for k, _ in ABLATION_KEYS]
            lines.append(f"| {variant} | {fam} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
