"""The run report: the seed-000 figures drawn from one of our own runs.

:func:`write_report` takes a :class:`~grokwatch.agent.RunData` (from a live agent or read back
from the store) and writes a PNG with train/test accuracy and ``t_mem``/``t_grok`` marked, every
scalar progress measure over time, dropout-robustness curves at several checkpoints, and
embedding cosine-similarity heat maps and embedding-value histograms before and after grokking.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from grokwatch.rundata import RunData

SERIES: list[tuple[str, list[str], str]] = [
    ("weight norm (L2)", ["weight_norm"], "linear"),
    ("activation sparsity", ["activation_sparsity", "inactive_neurons"], "linear"),
    ("absolute weight entropy", ["weight_entropy"], "linear"),
    ("local circuit complexity (KL)", ["circuit_complexity_mean"], "log"),
    ("MC-dropout test accuracy variance", ["mc_dropout_accuracy_var"], "linear"),
    (
        "embedding band score / bimodality",
        ["embedding_band_score", "embedding_bimodality"],
        "linear",
    ),
    ("Fourier sparsity of embeddings", ["fourier_gini"], "linear"),
    ("representation spectral entropy", ["spectral_entropy"], "linear"),
    ("train-loss spectral energy", ["loss_spectral_energy"], "log"),
    ("softmax collapse / grad-weight cosine", ["softmax_collapse", "grad_weight_cosine"], "linear"),
]


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


def write_report(run: RunData, path: str | Path) -> Path:
    """Draw the report of ``run`` to ``path`` (PNG) and return the path."""
    plt = pyplot()
    summary: Mapping[str, Any] = run.summary
    t_mem, t_grok = summary.get("t_mem"), summary.get("t_grok")
    fig, axes = plt.subplots(4, 4, figsize=(22, 18), constrained_layout=True)
    flat = list(axes.ravel())

    def mark(ax: Any) -> None:
        if t_mem is not None:
            ax.axvline(t_mem, color="tab:orange", ls="--", lw=1, label=f"t_mem={t_mem}")
        if t_grok is not None:
            ax.axvline(t_grok, color="tab:green", ls="--", lw=1, label=f"t_grok={t_grok}")

    ax = flat[0]
    for key, label in (("train_accuracy", "train"), ("test_accuracy", "test")):
        xs, ys = run.series(key)
        ax.plot(xs, ys, label=label)
    mark(ax)
    ax.set(title="accuracy", xlabel="step", ylim=(-0.02, 1.02))
    ax.legend(fontsize=8)

    for ax, (title, keys, scale) in zip(flat[1 : 1 + len(SERIES)], SERIES, strict=True):
        drawn = False
        for key in keys:
            xs, ys = run.series(key)
            if xs.size:
                ax.plot(xs, ys, label=key)
                drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "not applicable", ha="center", va="center", transform=ax.transAxes)
        elif scale == "log" and all(
            np.nanmin(run.series(k)[1]) > 0 for k in keys if run.series(k)[0].size
        ):
            ax.set_yscale("log")
        mark(ax)
        ax.set(title=title, xlabel="step")
        if drawn:
            ax.legend(fontsize=7)

    snaps = run.snapshots
    ax = flat[11]
    curve_steps = _pick_snapshots(snaps, "dropout_robustness_curve", t_grok, 5)
    for s in curve_steps:
        rates = snaps[s].get("dropout_robustness_rates", np.linspace(0, 0.9, 10))
        ax.plot(rates, snaps[s]["dropout_robustness_curve"], marker="o", ms=3, label=f"step {s}")
    ax.set(title="dropout robustness curves", xlabel="dropout rate", ylabel="test accuracy")
    if curve_steps:
        ax.legend(fontsize=7)

    cos_steps = _pick_snapshots(snaps, "embedding_cosine", t_grok, 2)
    for ax, s in zip(flat[12:14], cos_steps[:1] + cos_steps[-1:], strict=False):
        im = ax.imshow(snaps[s]["embedding_cosine"], cmap="RdBu_r", vmin=-1, vmax=1)
        when = "before" if t_grok is None or s < t_grok else "after"
        ax.set(title=f"embedding cosine similarity, step {s} ({when} grokking)")
        fig.colorbar(im, ax=ax, shrink=0.8)
    val_steps = _pick_snapshots(snaps, "embedding_values", t_grok, 2)
    for ax, s in zip(flat[14:16], val_steps[:1] + val_steps[-1:], strict=False):
        ax.hist(snaps[s]["embedding_values"].ravel(), bins=80, color="tab:purple")
        when = "before" if t_grok is None or s < t_grok else "after"
        ax.set(title=f"embedding values, step {s} ({when} grokking)", xlabel="value")
    for ax in flat[12:16]:
        if not ax.has_data():
            ax.text(
                0.5, 0.5, "no embedding snapshot", ha="center", va="center", transform=ax.transAxes
            )

    gap = summary.get("gap")
    fig.suptitle(
        f"grokwatch run {run.run_id}: outcome {summary.get('outcome')}, t_mem={t_mem}, "
        f"t_grok={t_grok}, gap={gap}, sharpness={_fmt(summary.get('sharpness'))}",
        fontsize=14,
    )
    return save_figure(fig, path, dpi=70)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.4f}"
