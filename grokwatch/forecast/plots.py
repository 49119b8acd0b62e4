"""Figures of the evaluation: lead against false-alarm rate, and per-run timelines."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from grokwatch.decision import Direction, Forecast
from grokwatch.forecast.evaluate import OURS
from grokwatch.forecast.replay import Replay
from grokwatch.report import pyplot, save_figure

__all__ = ["lead_vs_far", "reliability_diagram", "timeline"]


def lead_vs_far(
    result: Mapping[str, Any], path: str | Path, *, group: str = "overall", title: str = ""
) -> Path:
    """Median lead (fraction of the gap, misses count 0) and recall against false-alarm rate,
    one line per signal, over every threshold (the ``curves`` of one group of
    :func:`.evaluate.evaluate`)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    curves: Mapping[str, Sequence[Mapping[str, float]]] = result["groups"][group]["curves"]
    for name, pts in curves.items():
        if not pts:
            continue
        order = sorted(pts, key=lambda p: (p["false_alarm_rate"], p["median_lead_fraction"]))
        far = [p["false_alarm_rate"] for p in order]
        lead = [p["median_lead_fraction"] for p in order]
        rec = [p["recall"] for p in order]
        style = {"lw": 2.6, "color": "black", "zorder": 5} if name == OURS else {"lw": 1.2}
        axes[0].step(far, lead, where="post", label=name, **style)
        axes[1].step(far, rec, where="post", label=name, **style)
    for ax, ylabel in zip(axes, ("median lead / gap (misses = 0)", "recall"), strict=True):
        ax.axvline(0.05, color="red", ls=":", lw=1)
        ax.set_xlabel("false-alarm rate (runs that do not grok within budget)")
        ax.set_ylabel(ylabel)
        ax.set_xlim(-0.01, 1.01)
        ax.grid(alpha=0.3)
    axes[0].axhline(0.5, color="grey", ls="--", lw=0.8)
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(title or "lead vs false-alarm rate, every threshold")
    return save_figure(fig, path, dpi=110)


def timeline(
    run: Replay,
    forecasts: Sequence[Forecast],
    path: str | Path,
    *,
    threshold: float,
) -> Path:
    """Accuracies, the forecast probabilities, the alert, ``t_grok``, the ``t_grok`` estimate
    and the change points of one run."""
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(
        2, 1, figsize=(9, 6), sharex=True, constrained_layout=True, height_ratios=(3, 2)
    )
    s = run.steps
    ax.plot(s, run.measures["train_accuracy"], label="train accuracy", color="tab:blue")
    ax.plot(s, run.measures["test_accuracy"], label="test accuracy", color="tab:orange")
    p = np.array([f.p_grok_budget for f in forecasts])
    ph = np.array([f.p_grok_horizon for f in forecasts])
    conf = np.array([f.confidence for f in forecasts])
    bx.plot(s, p, color="black", label="P(grok within budget)")
    if np.isfinite(ph).any():
        bx.plot(s, ph, color="tab:green", lw=1, label=f"P(grok within {forecasts[0].horizon})")
    bx.plot(s, conf, color="grey", lw=0.8, ls=":", label="confidence")
    bx.axhline(threshold, color="red", ls=":", lw=1, label=f"alert threshold {threshold:.2f}")
    alert = next((int(st) for st, f in zip(s, forecasts, strict=True) if f.alert), None)
    for axis in (ax, bx):
        if run.t_mem is not None:
            axis.axvline(run.t_mem, color="tab:blue", ls="--", lw=0.8)
        if run.t_grok is not None:
            axis.axvline(run.t_grok, color="tab:orange", ls="--", lw=1)
        if alert is not None:
            axis.axvline(alert, color="red", lw=1.5)
        if run.budget is not None and run.budget <= s[-1]:
            axis.axvline(run.budget, color="grey", lw=0.8)
    for cp in run.change_points:
        marker = "^" if cp.direction is Direction.UP else "v"
        ax.plot(cp.step, 1.04, marker=marker, color="tab:purple", ms=6, clip_on=False)
    mid = _mid_estimate(run, forecasts)
    if mid is not None:
        t_hat, lo, hi, at = mid
        ax.errorbar(
            [t_hat],
            [0.5],
            xerr=[[t_hat - lo], [hi - t_hat]],
            fmt="D",
            color="tab:green",
            label=f"t_grok estimate at step {at}",
        )
    right = float(s[-1]) * 1.03
    ax.set_xlim(0, right)
    ax.set_ylim(-0.02, 1.08)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8, loc="center right")
    bx.set_ylim(-0.02, 1.02)
    bx.set_xlabel("step")
    bx.legend(fontsize=7, loc="center right")
    lead = ""
    if alert is not None and run.t_grok is not None and run.gap:
        lead = f", alert at {alert} (lead {(run.t_grok - alert) / run.gap:.0%} of the gap)"
    ax.set_title(
        f"{run.run_id}: {run.outcome}, t_mem {run.t_mem}, t_grok {run.t_grok}{lead}\n"
        "dashed: t_mem (blue), t_grok (orange); red: first alert; ▲▼: change points",
        fontsize=9,
    )
    return save_figure(fig, path, dpi=100)


def _mid_estimate(
    run: Replay, forecasts: Sequence[Forecast]
) -> tuple[float, float, float, int] | None:
    if run.t_mem is None or run.t_grok is None or not run.gap:
        return None
    i = int(np.searchsorted(run.steps, run.t_mem + run.gap / 2, side="right")) - 1
    f = forecasts[max(i, 0)]
    if f.t_grok is None or f.t_grok_low is None or f.t_grok_high is None:
        return None
    if not all(math.isfinite(v) for v in (f.t_grok, f.t_grok_low, f.t_grok_high)):
        return None
    return f.t_grok, f.t_grok_low, f.t_grok_high, int(run.steps[max(i, 0)])


def reliability_diagram(
    curves: Mapping[str, Mapping[str, Any]], path: str | Path, *, title: str = ""
) -> Path:
    """Observed frequency against mean forecast per bin, one line per model (each a
    :meth:`.calibration.Reliability.to_json`), bin weights as bars below."""
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(
        2, 1, figsize=(5.5, 6), sharex=True, constrained_layout=True, height_ratios=(3, 1)
    )
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8, label="perfectly calibrated")
    width = 0.8 / max(len(curves), 1)
    for k, (name, rel) in enumerate(curves.items()):
        edges = np.asarray(rel["edges"], dtype=float)
        mp = np.array([np.nan if v is None else v for v in rel["mean_forecast"]], dtype=float)
        fr = np.array([np.nan if v is None else v for v in rel["frequency"]], dtype=float)
        ok = np.isfinite(mp) & np.isfinite(fr)
        ece = rel.get("ece")
        label = f"{name} (ECE {ece:.3f})" if ece is not None else name
        ax.plot(mp[ok], fr[ok], marker="o", lw=1.5, label=label)
        left = edges[:-1] + (edges[1] - edges[0]) * (0.1 + k * width)
        bx.bar(left, rel["weight"], width=(edges[1] - edges[0]) * width, align="edge", label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("observed share that groks within budget")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    bx.set_xlabel("forecast P(grok within budget)")
    bx.set_ylabel("share of rows")
    fig.suptitle(title or "reliability", fontsize=10)
    return save_figure(fig, path, dpi=100)
