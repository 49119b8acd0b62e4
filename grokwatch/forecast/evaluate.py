"""``grokwatch evaluate``: our forecast and every baseline, on runs the model never saw.

Protocol (every number in docs/evaluation.md comes from here):

- **Runs.** Grokking runs (outcome ``grokking``) are the positives; runs that do not grok
  within their budget (``memorization``, ``confusion``) the negatives. ``comprehension`` runs
  (generalization without delay) are neither: they are listed but not scored.
- **Alert.** The first evaluation whose score reaches the signal's threshold -- for our model
  the confident P(grok within budget) (confidence >= 0.5), for a baseline its score
  (:mod:`.baselines`). On a positive only evaluations before ``t_grok`` count, on a negative
  every evaluation within the budget.
- **Recall** = alerted positives / positives; **false-alarm rate (FAR)** = alerted negatives /
  negatives; **lead** = ``t_grok - t_alert`` in steps and as a fraction of the gap
  ``t_grok - t_mem`` (median over alerted positives; a fraction above 1 means the alert came
  before memorization), and the median fraction over *all* positives with a miss counting 0
  (``median_lead_fraction_all``: lead and recall in one number, the fair comparison when a
  signal alerts on only a few runs).
- **Thresholds.** ``calibrated``: ours from ``grokwatch fit`` (validation runs), each
  baseline's the smallest with FAR <= 5 % on the calibration (training-family) runs -- what a
  user would deploy. ``matched``: each signal's smallest threshold with FAR <= 5 % on the
  evaluated runs themselves (per family and overall) -- the best case of every signal at the
  same false-alarm budget, used for "better than every baseline".
- **AUROC at f of the gap**: the score at the last evaluation at or before ``t_mem + f * gap``;
  a negative run is read at ``t_mem + f * G`` with G the median gap of the family's grokking
  runs (a confused run, which has no ``t_mem``, at the family's median ``t_mem`` + f G).
- **t_grok error** at mid-plateau (``t_mem + gap / 2``): median ``|t̂ - t_grok| / t_grok``, the
  same relative to the time still to go (``gap / 2``), and the interval's coverage.
- **Curves**: FAR, recall and median lead fraction (misses count 0) for every threshold, per
  group and overall.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from grokwatch.decision import Direction, Forecast
from grokwatch.forecast.baselines import BASELINES, Baseline
from grokwatch.forecast.forecaster import GrokForecaster
from grokwatch.forecast.online import MIN_CONFIDENCE
from grokwatch.forecast.replay import NEGATIVE, POSITIVE, Replay, choose_alert_threshold

__all__ = [
    "FRACTIONS",
    "OURS",
    "Signal",
    "alert_step",
    "auroc",
    "evaluate",
    "format_table",
    "run_max",
]

FRACTIONS = (0.10, 0.25, 0.50)
OURS = "grokwatch"
FAR_BUDGET = 0.05


def alert_step(r: Replay, score: np.ndarray, threshold: float) -> int | None:
    """First step whose score is >= ``threshold`` (before ``t_grok``, within the budget)."""
    for s, v in zip(r.steps, score, strict=True):
        if r.t_grok is not None and s >= r.t_grok:
            return None
        if r.budget is not None and s > r.budget:
            return None
        if v >= threshold:
            return int(s)
    return None


def run_max(r: Replay, score: np.ndarray) -> float:
    """The largest score an alert could have fired on (same window as :func:`alert_step`)."""
    keep = np.ones(r.steps.size, bool)
    if r.t_grok is not None:
        keep &= r.steps < r.t_grok
    if r.budget is not None:
        keep &= r.steps <= r.budget
    return float(np.max(score[keep])) if keep.any() else -math.inf


def auroc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """Mann-Whitney AUROC (ties count one half); NaN without both classes."""
    p, n = np.asarray(pos, float), np.asarray(neg, float)
    if p.size == 0 or n.size == 0:
        return math.nan
    p, n = np.nan_to_num(p, nan=-np.inf), np.nan_to_num(n, nan=-np.inf)
    greater = (p[:, None] > n[None, :]).sum()
    ties = (p[:, None] == n[None, :]).sum()
    return float((greater + 0.5 * ties) / (p.size * n.size))


@dataclasses.dataclass
class Signal:
    """A signal's scores on every evaluated run, and how to threshold it."""

    name: str
    scores: dict[str, np.ndarray]
    calibrated_threshold: float
    fixed_threshold: float | None = None
    sign: float = 1.0
    forecasts: dict[str, list[Forecast]] | None = None
    ranking: dict[str, np.ndarray] | None = None
    """Scores for the AUROCs when they differ from the alert scores (our forecast: the
    probability whatever its confidence; alerts also need confidence >= 0.5)."""

    def rank_scores(self, run_id: str) -> np.ndarray:
        return (self.ranking or self.scores)[run_id]


def _score_at(r: Replay, score: np.ndarray, t: float) -> float:
    i = int(np.searchsorted(r.steps, t, side="right")) - 1
    return float(score[max(i, 0)])


def family_refs(runs: Sequence[Replay]) -> tuple[float, float]:
    gaps = [r.gap for r in runs if r.outcome in POSITIVE and r.gap]
    mems = [r.t_mem for r in runs if r.outcome in POSITIVE and r.t_mem is not None]
    gap = float(np.median(gaps)) if gaps else 1000.0
    mem = float(np.median(mems)) if mems else 100.0
    return gap, mem


def _ref_time(r: Replay, f: float, gap: float, mem: float) -> float:
    if r.outcome in POSITIVE and r.t_mem is not None and r.gap:
        return r.t_mem + f * r.gap
    return (r.t_mem if r.t_mem is not None else mem) + f * gap


def metrics(
    runs: Sequence[Replay], sig: Signal, threshold: float, refs: tuple[float, float]
) -> dict[str, Any]:
    """Recall, FAR, lead, AUROC (and the t_grok error for our forecast) at ``threshold``."""
    pos = [r for r in runs if r.outcome in POSITIVE]
    neg = [r for r in runs if r.outcome in NEGATIVE]
    leads, fracs = [], []
    for r in pos:
        s = alert_step(r, sig.scores[r.run_id], threshold)
        if s is not None and r.t_grok is not None and r.gap:
            leads.append(r.t_grok - s)
            fracs.append((r.t_grok - s) / r.gap)
    alarms = sum(alert_step(r, sig.scores[r.run_id], threshold) is not None for r in neg)
    out: dict[str, Any] = {
        "threshold": threshold,
        "n_grokking": len(pos),
        "n_negative": len(neg),
        "recall": len(leads) / len(pos) if pos else math.nan,
        "false_alarm_rate": alarms / len(neg) if neg else math.nan,
        "median_lead_steps": float(np.median(leads)) if leads else math.nan,
        "median_lead_fraction": float(np.median(fracs)) if fracs else math.nan,
        "median_lead_fraction_all": (
            float(np.median(fracs + [0.0] * (len(pos) - len(fracs)))) if pos else math.nan
        ),
    }
    gap, mem = refs
    for f in FRACTIONS:
        p = [_score_at(r, sig.rank_scores(r.run_id), _ref_time(r, f, gap, mem)) for r in pos]
        n = [_score_at(r, sig.rank_scores(r.run_id), _ref_time(r, f, gap, mem)) for r in neg]
        out[f"auroc_{int(f * 100)}"] = auroc(p, n)
    if sig.forecasts is not None:
        out.update(_time_error(pos, sig.forecasts))
    return out


def _time_error(pos: Sequence[Replay], forecasts: Mapping[str, list[Forecast]]) -> dict[str, Any]:
    rel, rel_togo, covered = [], [], []
    for r in pos:
        if r.t_mem is None or r.t_grok is None or not r.gap:
            continue
        mid = r.t_mem + r.gap / 2
        i = int(np.searchsorted(r.steps, mid, side="right")) - 1
        f = forecasts[r.run_id][max(i, 0)]
        if f.t_grok is None or not math.isfinite(f.t_grok):
            continue
        rel.append(abs(f.t_grok - r.t_grok) / r.t_grok)
        rel_togo.append(abs(f.t_grok - r.t_grok) / max(r.t_grok - float(r.steps[max(i, 0)]), 1))
        if f.t_grok_low is not None and f.t_grok_high is not None:
            covered.append(f.t_grok_low <= r.t_grok <= f.t_grok_high)
    return {
        "t_grok_median_rel_error": float(np.median(rel)) if rel else math.nan,
        "t_grok_median_rel_error_to_go": float(np.median(rel_togo)) if rel_togo else math.nan,
        "t_grok_interval_coverage": float(np.mean(covered)) if covered else math.nan,
    }


def matched_threshold(runs: Sequence[Replay], sig: Signal, far: float = FAR_BUDGET) -> float:
    neg = [run_max(r, sig.scores[r.run_id]) for r in runs if r.outcome in NEGATIVE]
    return choose_alert_threshold(neg, far) if neg else math.inf


def curve(runs: Sequence[Replay], sig: Signal, n: int = 60) -> list[dict[str, float]]:
    """FAR, recall and median lead fraction (misses = 0) over a sweep of thresholds."""
    maxima = np.array([run_max(r, sig.scores[r.run_id]) for r in runs])
    maxima = maxima[np.isfinite(maxima)]
    if maxima.size == 0:
        return []
    grid = np.unique(np.quantile(maxima, np.linspace(0, 1, n)))
    grid = np.concatenate([grid, [np.nextafter(maxima.max(), np.inf)]])
    pos = [r for r in runs if r.outcome in POSITIVE]
    neg = [r for r in runs if r.outcome in NEGATIVE]
    out = []
    for th in grid:
        fr = []
        for r in pos:
            s = alert_step(r, sig.scores[r.run_id], th)
            fr.append((r.t_grok - s) / r.gap if s is not None and r.t_grok and r.gap else 0.0)
        fa = sum(alert_step(r, sig.scores[r.run_id], th) is not None for r in neg)
        out.append(
            {
                "threshold": float(th),
                "false_alarm_rate": fa / len(neg) if neg else math.nan,
                "recall": float(np.mean([f > 0 for f in fr])) if fr else math.nan,
                "median_lead_fraction": float(np.median(fr)) if fr else math.nan,
            }
        )
    return out


def forecast_signal(
    forecasts: Mapping[str, list[Forecast]],
    threshold: float,
    name: str = OURS,
) -> Signal:
    """Alerts on the confident P(grok within budget); AUROCs on P itself."""
    scores = {
        rid: np.array([f.p_grok_budget if f.confidence >= MIN_CONFIDENCE else -np.inf for f in fc])
        for rid, fc in forecasts.items()
    }
    ranking = {rid: np.array([f.p_grok_budget for f in fc]) for rid, fc in forecasts.items()}
    return Signal(name, scores, threshold, forecasts=dict(forecasts), ranking=ranking)


def our_signal(model: GrokForecaster, runs: Iterable[Replay]) -> Signal:
    forecasts = {r.run_id: r.forecasts(model) for r in runs}
    return forecast_signal(forecasts, model.alert_threshold_)


def baseline_signal(b: Baseline, runs: Sequence[Replay], calib: Sequence[Replay]) -> Signal:
    sign = 1.0
    if b.learn_sign and calib:
        gap, mem = family_refs(calib)
        pos = [r for r in calib if r.outcome in POSITIVE]
        neg = [r for r in calib if r.outcome in NEGATIVE]
        up = auroc(
            [_score_at(r, b.scores(r), _ref_time(r, 0.25, gap, mem)) for r in pos],
            [_score_at(r, b.scores(r), _ref_time(r, 0.25, gap, mem)) for r in neg],
        )
        if math.isfinite(up) and up < 0.5:
            sign = -1.0
    cal = [run_max(r, b.scores(r, sign)) for r in calib if r.outcome in NEGATIVE]
    threshold = choose_alert_threshold(cal, FAR_BUDGET) if cal else math.inf
    scores = {r.run_id: b.scores(r, sign) for r in runs}
    return Signal(b.name, scores, threshold, fixed_threshold=b.fixed_threshold, sign=sign)


def evaluate(
    model: GrokForecaster,
    runs: Sequence[Replay],
    calibration: Sequence[Replay],
    *,
    baselines: Sequence[Baseline] = BASELINES,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every metric of the module docstring, per family and overall, as JSON-ready data."""
    say = log or (lambda _: None)
    signals = [our_signal(model, runs)]
    say(f"forecast {len(runs)} runs")
    for b in baselines:
        signals.append(baseline_signal(b, runs, calibration))
    families = sorted({r.family for r in runs})
    groups: dict[str, list[Replay]] = {f: [r for r in runs if r.family == f] for f in families}
    groups["overall"] = list(runs)
    out: dict[str, Any] = {"groups": {}, "signals": {}}
    for name, group in groups.items():
        refs = family_refs(group)
        table: dict[str, Any] = {}
        for sig in signals:
            entry = {
                "calibrated": metrics(group, sig, sig.calibrated_threshold, refs),
                "matched": metrics(group, sig, matched_threshold(group, sig), refs),
            }
            if sig.fixed_threshold is not None:
                entry["fixed"] = metrics(group, sig, sig.fixed_threshold, refs)
            table[sig.name] = entry
        out["groups"][name] = {
            "n_runs": len(group),
            "outcomes": _count(r.outcome for r in group),
            "signals": table,
            "curves": {sig.name: curve(group, sig) for sig in signals},
        }
    for sig in signals:
        out["signals"][sig.name] = {
            "sign": sig.sign,
            "calibrated_threshold": sig.calibrated_threshold,
            "fixed_threshold": sig.fixed_threshold,
        }
    out["curves"] = out["groups"]["overall"]["curves"]
    out["claims"] = claims(runs)
    return out


def _count(items: Iterable[str]) -> dict[str, int]:
    c: dict[str, int] = {}
    for i in items:
        c[i] = c.get(i, 0) + 1
    return c


def claims(runs: Sequence[Replay]) -> dict[str, Any]:
    """Checks of the seed papers' claims on these runs (offline, whole-run views)."""
    pos = [r for r in runs if r.outcome in POSITIVE and r.t_grok is not None and r.gap]
    neg = [r for r in runs if r.outcome in NEGATIVE]
    out: dict[str, Any] = {}
    peaks = []
    for r in pos:
        v = r.measures["mc_dropout_accuracy_var"]
        if np.isfinite(v).any():
            t_peak = float(r.steps[int(np.nanargmax(v))])
            peaks.append((r.t_grok - t_peak) / r.gap)  # type: ignore[operator]
    out["mc_dropout_peak_before_t_grok"] = {
        "n": len(peaks),
        "fraction_before": float(np.mean([p > 0 for p in peaks])) if peaks else math.nan,
        "median_lead_fraction": float(np.median(peaks)) if peaks else math.nan,
    }
    for measure, direction in (
        ("test_accuracy", Direction.UP),
        ("test_loss", Direction.DOWN),
        ("weight_norm", Direction.DOWN),
    ):
        leads = []
        for r in pos:
            t_mem = r.t_mem or 0
            first = next(
                (
                    cp
                    for cp in r.change_points
                    if cp.measure == measure and cp.direction is direction and cp.step >= t_mem
                ),
                None,
            )
            # confirmed (detected) before t_grok: usable online; lead as a fraction of the gap
            if first is not None and first.detected_at < r.t_grok:  # type: ignore[operator]
                leads.append((r.t_grok - first.detected_at) / r.gap)  # type: ignore[operator]
        out[f"change_point_{measure}_{direction.value}_before_t_grok"] = {
            "n": len(pos),
            "fraction": len(leads) / len(pos) if pos else math.nan,
            "median_lead_fraction": float(np.median(leads)) if leads else math.nan,
        }
    below_pos = [_below_0609(r, before=r.t_grok) for r in pos]
    below_neg = [_below_0609(r, before=None) for r in neg]
    out["spectral_entropy_below_0.609"] = {
        "grokking_before_t_grok": float(np.mean(below_pos)) if below_pos else math.nan,
        "negatives_ever": float(np.mean(below_neg)) if below_neg else math.nan,
        "n_grokking": len(below_pos),
        "n_negative": len(below_neg),
    }
    return out


def _below_0609(r: Replay, before: int | None) -> bool:
    e = r.measures["spectral_entropy"]
    keep = np.isfinite(e)
    if before is not None:
        keep &= r.steps < before
    return bool((e[keep] < 0.609).any())


def format_table(result: Mapping[str, Any], *, view: str = "matched") -> str:
    """The evaluation as a markdown table per group (``view``: calibrated/matched/fixed)."""
    cols = (
        ("recall", "recall", "{:.2f}"),
        ("false_alarm_rate", "FAR", "{:.2f}"),
        ("median_lead_steps", "lead (steps)", "{:.0f}"),
        ("median_lead_fraction", "lead (gap)", "{:.2f}"),
        ("auroc_10", "AUROC 10%", "{:.2f}"),
        ("auroc_25", "AUROC 25%", "{:.2f}"),
        ("auroc_50", "AUROC 50%", "{:.2f}"),
        ("t_grok_median_rel_error", "t_grok err", "{:.2f}"),
    )
    lines = []
    for name, group in result["groups"].items():
        if not any(view in entry for entry in group["signals"].values()):
            continue
        counts = ", ".join(f"{k} {v}" for k, v in sorted(group["outcomes"].items()))
        lines.append(f"\n{name} ({group['n_runs']} runs: {counts}), thresholds: {view}\n")
        lines.append("| signal | threshold | " + " | ".join(c[1] for c in cols) + " |")
        lines.append("|---" * (len(cols) + 2) + "|")
        for sig, entry in group["signals"].items():
            m = entry.get(view)
            if m is None:
                continue
            cells = [
                "—" if m.get(k) is None or not math.isfinite(m[k]) else fmt.format(m[k])
                for k, _, fmt in cols
            ]
            th = m["threshold"]
            th_s = f"{th:.3g}" if math.isfinite(th) else "—"
            lines.append(f"| {sig} | {th_s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
