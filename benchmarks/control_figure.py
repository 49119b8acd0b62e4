"""The run-control figure: compute against grokkers lost, one point per method.

Reads ``benchmarks/results/control/benchmark.json`` (written by
``python -m benchmarks.control_replay``) and writes ``compute_vs_lost.png`` beside it; the
shaded corner is the issue's goal (at most 60 % of the fixed budget's compute, at most 1 % of
the grokking runs lost).

    python -m benchmarks.control_figure
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RESULTS = Path("benchmarks/results/control")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args()
    folder = Path(args.results)
    methods = json.loads((folder / "benchmark.json").read_text())["methods"]
    fig, ax = plt.subplots(figsize=(6.0, 4.2), dpi=120)
    ax.fill_between([0.0, 0.6], -2.0, 1.0, color="tab:green", alpha=0.25, zorder=0)
    placed: list[tuple[float, float]] = []
    for name, m in methods.items():
        x, y = m["compute_fraction"], 100.0 * m["grokkers_lost"]
        ax.scatter([x], [y], s=60, zorder=3, color="tab:red" if name == "grokwatch" else "0.3")
        label = f"{name}\nrescued {m['rescued']}/{m['past_budget_grokkers']}"
        near = sum(abs(x - px) < 0.15 and abs(y - py) < 3.0 for px, py in placed)
        placed.append((x, y))
        offset = (6, 4) if not near else (-40, -26 * near)  # a neighbour: label below
        ax.annotate(label, (x, y), textcoords="offset points", xytext=offset, fontsize=8)
    ax.set_xlim(0.0, 1.1)
    top = max(100.0 * m["grokkers_lost"] for m in methods.values())
    ax.set_ylim(-12.0, max(10.0, top * 1.2))
    ax.set_xlabel("compute (total steps / fixed budget)")
    ax.set_ylabel("grokking runs lost (%)")
    ax.set_title("Run control on held-out runs (green: the goal)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = folder / "compute_vs_lost.png"
    fig.savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
