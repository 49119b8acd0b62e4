"""The run report: one PNG that shows what happened to a run and what grokwatch said about it.

:func:`write_report` takes a :class:`~grokwatch.rundata.RunData` (from a live agent or read back
from the store) and, optionally, the run's :class:`~grokwatch.timeline.Timeline` (the agent's
decisions; ``grokwatch report`` replays them from the stored points). The figure has, in order:

- the training and test loss, and the accuracies, with ``t_mem``/``t_grok`` marked;
- the forecast: P(grok within the budget) against the alert threshold, the first alert, and the
  ``t_grok`` estimate with its 80 % interval against the ``t_grok`` actually seen;
- every progress measure that was measured and moved (empty or constant series are left out),
  with the change points of that measure marked (▲ up, ▼ down);
- stop/extend actions as vertical lines on the loss, accuracy and forecast panels;
- dropout-robustness curves at several checkpoints, embedding cosine-similarity heat maps and
  embedding-value histograms before and after grokking, when the run has those snapshots.

Every axis is labelled and every text is at least 9 pt at the PNG's native size (100 dpi).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from grokwatch.rundata import RunData

if TYPE_CHECKING:
    from grokwatch.timeline import Timeline

DPI = 100
FONT = 10
"""Base font size in points (legends and ticks use 9, titles 11)."""

SERIES: list[tuple[str, list[str], str, str]] = [
    ("weight norm", ["weight_norm"], "L2 norm of all parameters", "linear"),
    ("absolute weight entropy", ["weight_entropy"], "−Σ|w| log|w| (nats)", "linear"),
    (
        "activation sparsity",
        ["activation_sparsity", "activation_zero_fraction", "inactive_neurons"],
        "fraction",
        "linear",
    ),
    ("local circuit complexity", ["circuit_complexity_mean"], "KL per input (nats)", "log"),
    ("MC-dropout test accuracy", ["mc_dropout_accuracy_var"], "variance over passes", "linear"),
    ("dropout robustness", ["dropout_robustness_auc"], "area under the curve", "linear"),
    ("embedding band score", ["embedding_band_score"], "circulant share (0–1)", "linear"),
    ("embedding bimodality", ["embedding_bimodality"], "Sarle's coefficient", "linear"),
    ("Fourier sparsity of embeddings", ["fourier_gini", "fourier_ipr"], "Gini / IPR", "linear"),
    ("representation spectral entropy", ["spectral_entropy"], "normalized entropy", "linear"),
    ("train-loss spectral energy", ["loss_spectral_energy"], "Hjorth activity", "log"),
    ("softmax collapse", ["softmax_collapse"], "fraction of samples", "linear"),
    ("gradient–weight cosine", ["grad_weight_cosine"], "cosine", "linear"),
]
"""Measure panels: title, the series drawn, the y-axis label, the y scale."""

COLS = 4


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, *, dpi: int) -> Path:
    """Write ``fig`` to ``path`` (parent directories made), close it, return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    pyplot().close(fig)
    return out


def _moving(run: RunData, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The series ``key`` if it has at least two finite values that differ, else ``None``."""
    xs, ys = run.series(key)
    finite = np.isfinite(ys)
    if finite.sum() < 2:
        return None
    values = ys[finite]
    if float(np.ptp(values)) <= 1e-12 * max(1.0, float(np.abs(values).max())):
        return None
    return xs, ys


def _pick_snapshots(
    snapshots: Mapping[int, Mapping[str, np.ndarray]], key: str, t_grok: int | None, n: int
) -> list[int]:
    steps = sorted(s for s, arrs in snapshots.items() if key in arrs)
    if len(steps) <= n:
        return steps
    if t_grok is not None:
        before = [s for s in steps if s < t_grok]
        after = [s for s in steps if s >= t_grok]
        chosen = {steps[0], steps[-1]}
        if before:
            chosen.add(before[-1])
        if after:
            chosen.add(after[0])
        for s in np.linspace(0, len(steps) - 1, n).astype(int):
            if len(chosen) >= n:
                break
            chosen.add(steps[s])
        return sorted(chosen)
    return [steps[i] for i in np.linspace(0, len(steps) - 1, n).astype(int)]


class _Marks:
    """Events, change points and actions drawn on the step-axis panels."""

    def __init__(self, summary: Mapping[str, Any], timeline: Timeline | None) -> None:
        self.t_mem = summary.get("t_mem")
        self.t_grok = summary.get("t_grok")
        self.timeline = timeline
        self.actions = [] if timeline is None else timeline.actions()

    def events(self, ax: Any, *, legend: bool = False) -> None:
        """``t_mem``/``t_grok`` lines; named in the legend only where ``legend`` (once per figure
        is enough: the colours are the same on every panel)."""
        for step, name, color in (
            (self.t_mem, "t_mem", "tab:orange"),
            (self.t_grok, "t_grok", "tab:green"),
        ):
            if step is not None:
                label = f"{name} = {step}" if legend else None
                ax.axvline(step, color=color, ls="--", lw=1.2, label=label)

    def actions_on(self, ax: Any) -> None:
        for i, a in enumerate(self.actions):
            color = "tab:red" if a["action"] == "stop" else "tab:purple"
            ax.axvline(
                a["step"], color=color, lw=1.5, label=f"advice: {a['action']}" if i == 0 else None
            )

    def change_points(self, ax: Any, keys: Sequence[str], xs: np.ndarray, ys: np.ndarray) -> int:
        """Mark the change points of ``keys`` on the curve ``(xs, ys)``; returns how many."""
        if self.timeline is None or xs.size == 0:
            return 0
        drawn = 0
        for cp in self.timeline.change_points:
            if cp.measure not in keys:
                continue
            y = float(np.interp(cp.step, xs, ys))
            up = cp.direction.value == "up"
            named = any(t.startswith("change point") for t in ax.get_legend_handles_labels()[1])
            label = None if named else "change point (▲ up, ▼ down)"
            ax.plot(
                [cp.step], [y], marker="^" if up else "v", ms=9, ls="none", color="k", label=label
            )
            drawn += 1
        return drawn


def _legend(ax: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=FONT - 1, loc="best", framealpha=0.85)


def write_report(run: RunData, path: str | Path, *, timeline: Timeline | None = None) -> Path:
    """Draw the report of ``run`` to ``path`` (PNG) and return the path.

    ``timeline`` adds the forecast panels, the change points and the stop/extend advice; without
    it the report shows the measures and the events only.
    """
    plt = pyplot()
    summary: Mapping[str, Any] = timeline.summary if timeline is not None else run.summary
    marks = _Marks(summary, timeline)
    measure_panels = []
    for title, keys, ylabel, scale in SERIES:
        drawn = [(k, xy) for k in keys if (xy := _moving(run, k)) is not None]
        if drawn:
            measure_panels.append((title, drawn, ylabel, scale))
    snaps = run.snapshots
    t_grok = summary.get("t_grok")
    curve_steps = _pick_snapshots(snaps, "dropout_robustness_curve", t_grok, 5)
    cos_steps = _pick_snapshots(snaps, "embedding_cosine", t_grok, 2)
    val_steps = _pick_snapshots(snaps, "embedding_values", t_grok, 2)
    snapshot_panels = int(bool(curve_steps)) + len(_ends(cos_steps)) + len(_ends(val_steps))
    forecast = timeline is not None and any(
        e.get("p_grok_budget") is not None for e in timeline.entries
    )
    n_panels = 2 + (2 if forecast else 0) + len(measure_panels) + snapshot_panels
    rows = math.ceil(n_panels / COLS)
    style = {
        "font.size": FONT,
        "axes.titlesize": FONT + 1,
        "axes.labelsize": FONT,
        "xtick.labelsize": FONT - 1,
        "ytick.labelsize": FONT - 1,
    }
    with plt.rc_context(style):
        fig, axes = plt.subplots(
            rows, COLS, figsize=(4.2 * COLS, 3.3 * rows + 0.6), constrained_layout=True
        )
        flat = list(np.atleast_1d(axes).ravel())
        panels = iter(flat)

        ax = next(panels)
        for key, label in (("train_loss", "train"), ("test_loss", "test")):
            xs, ys = run.series(key)
            if xs.size:
                ax.plot(xs, ys, label=label)
        losses = [run.series(k)[1] for k in ("train_loss", "test_loss")]
        if all(np.nanmin(ys) > 0 for ys in losses if ys.size):
            ax.set_yscale("log")
        marks.events(ax)
        marks.actions_on(ax)
        for key in ("train_loss", "test_loss"):
            marks.change_points(ax, [key], *run.series(key))
        ax.set(title="loss", xlabel="step", ylabel="cross-entropy (nats)")
        _legend(ax)

        ax = next(panels)
        for key, label in (("train_accuracy", "train"), ("test_accuracy", "test")):
            xs, ys = run.series(key)
            if xs.size:
                ax.plot(xs, ys, label=label)
        marks.events(ax, legend=True)
        marks.actions_on(ax)
        marks.change_points(ax, ["test_accuracy"], *run.series("test_accuracy"))
        ax.set(title="accuracy", xlabel="step", ylabel="accuracy", ylim=(-0.02, 1.02))
        _legend(ax)

        if forecast and timeline is not None:
            _forecast_panels(next(panels), next(panels), timeline, marks)

        for title, drawn, ylabel, scale in measure_panels:
            ax = next(panels)
            for key, (xs, ys) in drawn:
                ax.plot(xs, ys, label=key if len(drawn) > 1 else None)
                marks.change_points(ax, [key], xs, ys)
            if scale == "log" and all(np.nanmin(ys) > 0 for _, (_, ys) in drawn):
                ax.set_yscale("log")
            marks.events(ax)
            ax.set(title=title, xlabel="step", ylabel=ylabel)
            _legend(ax)

        if curve_steps:
            ax = next(panels)
            for s in curve_steps:
                rates = snaps[s].get("dropout_robustness_rates", np.linspace(0, 0.9, 10))
                ax.plot(
                    rates, snaps[s]["dropout_robustness_curve"], marker="o", ms=4, label=f"step {s}"
                )
            ax.set(title="dropout robustness curves", xlabel="dropout rate", ylabel="test accuracy")
            _legend(ax)
        for s in _ends(cos_steps):
            ax = next(panels)
            im = ax.imshow(snaps[s]["embedding_cosine"], cmap="RdBu_r", vmin=-1, vmax=1)
            ax.set(
                title=f"embedding cosine, step {s} ({_when(s, t_grok)})",
                xlabel="embedding row (residue)",
                ylabel="embedding row (residue)",
            )
            fig.colorbar(im, ax=ax, shrink=0.85, label="cosine similarity")
        for s in _ends(val_steps):
            ax = next(panels)
            ax.hist(snaps[s]["embedding_values"].ravel(), bins=80, color="tab:purple")
            ax.set(
                title=f"embedding values, step {s} ({_when(s, t_grok)})",
                xlabel="value",
                ylabel="count",
            )
        for ax in panels:
            ax.set_axis_off()

        sharp = summary.get("sharpness")
        fig.suptitle(
            f"grokwatch run {run.run_id}: outcome {summary.get('outcome')}, "
            f"t_mem = {summary.get('t_mem')}, "
            f"t_grok = {t_grok}, gap = {summary.get('gap')}, "
            f"sharpness = {'n/a' if sharp is None else f'{float(sharp):.2f}'}",
            fontsize=FONT + 3,
        )
        return save_figure(fig, path, dpi=DPI)


def _ends(steps: list[int]) -> list[int]:
    """The first and the last of ``steps`` (one when there is one)."""
    return steps[:1] + steps[-1:] if len(steps) > 1 else steps


def _when(step: int, t_grok: Any) -> str:
    return "before grokking" if t_grok is None or step < t_grok else "after grokking"


def _forecast_panels(ax_p: Any, ax_t: Any, timeline: Timeline, marks: _Marks) -> None:
    """P(grok within budget) against the alert threshold; the t_grok estimate and interval."""
    rows = [e for e in timeline.entries if e.get("p_grok_budget") is not None]
    steps = np.array([e["step"] for e in rows], dtype=float)
    p = np.array([e["p_grok_budget"] for e in rows], dtype=float)
    ax_p.plot(steps, p, color="tab:blue", label="P(grok within budget)")
    horizon = [e.get("p_grok_horizon") for e in rows]
    if all(h is not None for h in horizon):
        h = rows[0].get("horizon")
        ax_p.plot(steps, np.array(horizon, dtype=float), color="tab:cyan", lw=1,
                  label=f"P(grok within {h} steps)")  # fmt: skip
    if timeline.alert_threshold is not None:
        ax_p.axhline(timeline.alert_threshold, color="tab:red", ls=":", lw=1.5,
                     label=f"alert threshold {timeline.alert_threshold:.3f}")  # fmt: skip
    first = timeline.first_alert()
    if first is not None:
        ax_p.plot([first["step"]], [first["p_grok_budget"]], marker="*", ms=14, color="tab:red",
                  ls="none", label=f"first alert, step {first['step']}")  # fmt: skip
    marks.events(ax_p, legend=True)
    marks.actions_on(ax_p)
    ax_p.set(
        title="forecast: will it grok?", xlabel="step", ylabel="probability", ylim=(-0.02, 1.02)
    )
    _legend(ax_p)

    est = [e for e in rows if e.get("t_grok") is not None]
    if est:
        xs = np.array([e["step"] for e in est], dtype=float)
        mid = np.array([e["t_grok"] for e in est], dtype=float)
        low = np.array([e.get("t_grok_low") or np.nan for e in est], dtype=float)
        high = np.array([e.get("t_grok_high") or np.nan for e in est], dtype=float)
        ax_t.fill_between(xs, low, high, color="tab:blue", alpha=0.2, label="80 % interval")
        ax_t.plot(xs, mid, color="tab:blue", label="t_grok estimate")
    if marks.t_grok is not None:
        ax_t.axhline(
            marks.t_grok, color="tab:green", ls="--", lw=1.2, label=f"t_grok seen = {marks.t_grok}"
        )
    if first is not None:
        ax_t.axvline(first["step"], color="tab:red", ls=":", lw=1.2, label="first alert")
    ax_t.set(
        title="forecast: when?", xlabel="step (when forecast)", ylabel="estimated t_grok (step)"
    )
    if not est:
        ax_t.text(
            0.5, 0.5, "no t_grok estimate", ha="center", va="center", transform=ax_t.transAxes
        )
    _legend(ax_t)
