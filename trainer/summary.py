"""Summarize a corpus: outcomes per family and split, and a phase diagram.

    python -m trainer.summary trainer/data/corpus --png trainer/data/phase_diagram.png \
        --json trainer/data/corpus_summary.json

Prints a markdown table of outcomes per family (and per split: "train" fits the forecaster,
"heldout" are training-family runs on held-out ops/moduli, "eval" the evaluation-only
families), the failed runs, the wall time spent, and the result of the slow-grokker check if
one was run (`python -m trainer.sweep --check-memorization`). The phase diagram puts each run
at (weight decay, training fraction) — Liu et al. 2022 (arXiv 2205.10343, Fig. 1) draw these
phases on the same axes — coloured by outcome, one panel per family; the digits family has
no training fraction and is drawn over (weight decay, init scale), Omnigrok's axes.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trainer import corpus as corpus_io
from trainer.corpus import OUTCOMES, Corpus

COLOURS = {
    "grokking": "#d62728",
    "comprehension": "#2ca02c",
    "memorization": "#1f77b4",
    "confusion": "#7f7f7f",
}
FAMILY_ORDER = ("mlp", "onehot", "transformer", "digits", "parity", "perm")
# the vertical axis of a family's phase diagram (the horizontal one is weight decay)
Y_AXIS = {"digits": "init_scale", "parity": "n_train"}
Y_LABEL = {"frac": "training fraction", "init_scale": "init scale", "n_train": "training inputs"}
CHECK_DIR = Path("checks") / "memorization"


def _families(c: Corpus) -> list[str]:
    present = {r.family for r in c}
    return [f for f in FAMILY_ORDER if f in present] + sorted(present - set(FAMILY_ORDER))


def outcome_table(c: Corpus, *, by: str = "family") -> str:
    """Markdown table: one row per family (or family/split), outcome counts and shares."""
    rows: dict[str, Counter[str]] = {}
    for run in c:
        key = run.family if by == "family" else f"{run.family} / {run.split}"
        outcome = run.outcome if run.status == "ok" else "failed"
        rows.setdefault(key, Counter())[outcome or "failed"] += 1
    order = sorted(rows, key=lambda k: (_rank(k.split(" / ")[0]), k))
    head = f"| {by} | runs | " + " | ".join(OUTCOMES) + " | failed |"
    lines = [head, "|" + "---|" * (len(OUTCOMES) + 3)]
    for key in order:
        counts = rows[key]
        ok = sum(counts[o] for o in OUTCOMES)
        cells = [f"{counts[o]} ({100 * counts[o] / ok:.0f} %)" if ok else "0" for o in OUTCOMES]
        lines.append(
            f"| {key} | {sum(counts.values())} | " + " | ".join(cells) + f" | {counts['failed']} |"
        )
    return "\n".join(lines)


def _rank(family: str) -> int:
    return FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)


def phase_diagram(c: Corpus, path: str | Path) -> Path:
    """Scatter of the runs over (weight decay, train fraction), coloured by outcome; PNG."""
    from grokwatch.report import pyplot, save_figure

    plt = pyplot()

    families = _families(c) or ["mlp"]
    cols = min(len(families), 3)
    rows = -(-len(families) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.4 * rows), squeeze=False)
    for ax in axes.flat[len(families) :]:
        ax.set_visible(False)
    for ax, family in zip(axes.flat, families, strict=False):
        runs = [r for r in c if r.family == family and r.status == "ok"]
        y_key = Y_AXIS.get(family, "frac")
        if not all(y_key in r.config for r in runs):
            y_key = "init_scale"
        for outcome in OUTCOMES:
            sel = [r for r in runs if r.outcome == outcome]
            if not sel:
                continue
            wd = np.array([r.config["wd"] for r in sel], dtype=float)
            y = np.array([r.config[y_key] for r in sel], dtype=float)
            ax.scatter(wd, y, s=12, c=COLOURS[outcome], alpha=0.75, linewidths=0,
                       label=f"{outcome} ({len(sel)})")  # fmt: skip
        # weight decay 0 is a phase of its own (no grokking): a symlog axis keeps it visible
        ax.set_xscale("symlog", linthresh=0.1)
        if y_key == "init_scale":
            ax.set_yscale("log")
        ax.set_xlabel("weight decay")
        ax.set_ylabel(Y_LABEL[y_key])
        ax.set_title(f"{family} ({len(runs)} runs)")
        ax.legend(fontsize=8, loc="best", framealpha=0.8)
        ax.grid(alpha=0.3)
    fig.suptitle("Outcome within each run's budget")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def timing(c: Corpus) -> dict[str, float]:
    """Training wall time summed over runs, in seconds, per family (one worker's time)."""
    out: dict[str, float] = {}
    for run in c:
        out[run.family] = out.get(run.family, 0.0) + float(run.meta.get("wall_time") or 0.0)
    return out


def timing_table(c: Corpus) -> str:
    """Per family: training time summed over runs, median/mean per run, milliseconds per
    step (probes included), steps run over budgeted steps (the early stop after
    generalization) and the agent's share of the time."""
    lines = [
        "| family | runs | training time (sum over runs) | median / mean per run "
        "| ms per step (probes included) | steps run / budget | probe share |",
        "|---|---|---|---|---|---|---|",
    ]
    for family in _families(c):
        runs = [r for r in c if r.family == family and r.status == "ok"]
        if not runs:
            continue
        wall = np.array([float(r.meta.get("wall_time") or 0.0) for r in runs])
        steps = np.array([int(r.meta.get("steps_run") or 0) for r in runs])
        budget = np.array([int(r.labels.get("budget") or 0) for r in runs])
        probes = sum(float((r.meta.get("agent") or {}).get("measure_seconds") or 0.0) for r in runs)
        lines.append(
            f"| {family} | {len(runs)} | {wall.sum() / 3600:.2f} h "
            f"| {np.median(wall):.1f} s / {wall.mean():.1f} s "
            f"| {1e3 * wall.sum() / max(steps.sum(), 1):.1f} "
            f"| {steps.sum() / max(budget.sum(), 1):.2f} | {probes / max(wall.sum(), 1e-9):.0%} |"
        )
    return "\n".join(lines)


def check_report(directory: str | Path) -> str | None:
    """The slow-grokker check (memorization runs continued to a multiple of the budget)."""
    path = Path(directory) / CHECK_DIR / "report.json"
    if not path.exists():
        return None
    r = json.loads(path.read_text())
    return (
        f"Slow-grokker check: {r['checked']} runs labelled memorization were continued to "
        f"{r['factor']}× their budget; {r['grokked_later']} generalized between B and "
        f"{r['factor']}·B ({r['mislabel_rate']:.0%})"
        + (f", at {r['t_grok_over_budget']} × B" if r["grokked_later"] else "")
        + f"; {r['same_prefix']} of {r['checked']} reproduced t_mem exactly."
    )


def counts_json(c: Corpus) -> dict[str, object]:
    """family → outcome → runs, plus totals and training time: what docs tables are made of."""
    counts = c.counts()
    return {
        "version": c.version,
        "runs": len(c),
        "families": {f: {o: counts[f][o] for o in (*OUTCOMES, "failed")} for f in _families(c)},
        "training_hours": {f: round(t / 3600, 3) for f, t in sorted(timing(c).items())},
    }


def summarize(
    directory: str | Path, *, png: str | Path | None = None, json_out: str | Path | None = None
) -> str:
    c = corpus_io.load(directory, include_failed=True)
    if json_out is not None:
        Path(json_out).write_text(json.dumps(counts_json(c), indent=2) + "\n")
    parts = [
        f"{len(c)} runs in {directory} (format version {c.version})",
        "",
        outcome_table(c),
        "",
        outcome_table(c, by="split"),
    ]
    times = timing(c)
    parts += ["", "training time (one worker): " + ", ".join(
        f"{f} {t / 3600:.2f} h" for f, t in sorted(times.items())
    ), "", timing_table(c)]  # fmt: skip
    report = check_report(directory)
    if report:
        parts += ["", report]
    failed = [r for r in c if r.status != "ok"]
    if failed:
        parts += ["", f"{len(failed)} failed runs, e.g. {failed[0].run_id}: "
                  f"{failed[0].meta.get('error', '').splitlines()[0]}"]  # fmt: skip
    if png is not None:
        parts += ["", f"phase diagram: {phase_diagram(c, png)}"]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m trainer.summary", description=__doc__)
    parser.add_argument("corpus", type=Path, help="corpus directory")
    parser.add_argument("--png", type=Path, default=None, help="write the phase diagram here")
    parser.add_argument("--json", type=Path, default=None, help="write the counts here")
    args = parser.parse_args(argv)
    try:
        text = summarize(args.corpus, png=args.png, json_out=args.json)
    except corpus_io.CorpusFormatError as exc:
        parser.error(str(exc))
    print(text)
    return text


if __name__ == "__main__":
    main()
