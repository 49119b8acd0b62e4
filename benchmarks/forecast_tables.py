"""The forecaster tables of docs/evaluation.md, from the JSON ``grokwatch evaluate`` wrote.

One table per group (each evaluation family, all of them together, the held-out ops/moduli):
our forecast at its calibrated threshold (chosen on validation runs of the training family)
and at the matched threshold (FAR <= 5 % on the evaluated runs), then every baseline at its
matched threshold, so every row is read at the same false-alarm budget.

    python benchmarks/forecast_tables.py benchmarks/results/forecast/evaluation.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

COLS = (
    ("recall", "recall", "{:.2f}"),
    ("false_alarm_rate", "FAR", "{:.2f}"),
    ("median_lead_steps", "lead (steps)", "{:.0f}"),
    ("median_lead_fraction", "lead (× gap)", "{:.2f}"),
    ("median_lead_fraction_all", "lead, all (× gap)", "{:.2f}"),
    ("auroc_10", "AUROC 10 %", "{:.2f}"),
    ("auroc_25", "AUROC 25 %", "{:.2f}"),
    ("auroc_50", "AUROC 50 %", "{:.2f}"),
    ("t_grok_median_rel_error", "t_grok error", "{:.2f}"),
)


def cell(m: dict[str, Any], key: str, fmt: str) -> str:
    v = m.get(key)
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def table(group: dict[str, Any]) -> str:
    head = "| signal | threshold | " + " | ".join(c[1] for c in COLS) + " |"
    lines = [head, "|---" * (len(COLS) + 2) + "|"]
    for name, entry in group["signals"].items():
        rows = [("matched", entry["matched"])]
        if name == "grokwatch":
            rows.insert(0, ("calibrated", entry["calibrated"]))
        if "fixed" in entry:
            rows.append(("fixed", entry["fixed"]))
        for view, m in rows:
            th = m.get("threshold")
            th_s = "—" if th is None or not math.isfinite(th) else f"{th:.3g}"
            label = f"**{name}**" if name == "grokwatch" else name
            lines.append(
                f"| {label} ({view}) | {th_s} | "
                + " | ".join(cell(m, k, f) for k, _, f in COLS)
                + " |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", help="evaluation.json of grokwatch evaluate")
    args = ap.parse_args()
    result = json.loads(Path(args.json).read_text())
    for split in ("eval", "heldout"):
        if split not in result:
            continue
        for name, group in result[split]["groups"].items():
            if split == "heldout" and name == "overall":
                continue
            counts = ", ".join(f"{v} {k}" for k, v in sorted(group["outcomes"].items()))
            title = "all evaluation families" if name == "overall" else name
            print(f"\n**{title}** ({split}; {group['n_runs']} runs: {counts})\n")
            print(table(group))


if __name__ == "__main__":
    main()
