"""An ablation against the headline, run for run: which differences are more than the sample.

Two leave-one-family-out records of the same runs (the same corpora, cap and seed; each with
its fold models in ``DIR/lofo/models``) are compared on every held-out family's runs at their
own cadence: each fold model forecasts the runs (reading its own record's measures), the
numbers the goals read are computed for both (:func:`grokwatch.forecast.lofo.goal_numbers`,
as the records compute them; checked against both records), and the family's runs are drawn
again ``--draws`` times (:func:`~grokwatch.forecast.lofo.outcome_draws`), the same draw for
both, so that each difference gets a 95 % interval of its own. A difference is *decided* when
its interval leaves out 0. The macro row is the mean over families, draw by draw. Nothing is
fitted: the fold models are the records' own.

``--outside DIR`` compares only the runs that the record in ``DIR`` does not hold (e.g. a rule
judged on the headline's 100 runs per family, checked on the other runs of a 300-run record:
runs it was not judged on); the records' own numbers are then not checked, being over all runs.

A record whose fold models this code cannot read (another feature schema: an ablation that
changed the features, run from a checkout of its commit) is compared through its forecasts:
``--save FILE --record DIR``, run in that checkout, writes the record's held-out runs and their
forecasts to ``FILE`` (a pickle of this project's own objects, written and read by this script
only); ``--base`` or ``--variant`` then take ``FILE`` in place of the record's directory.

    nice -n 19 python -m benchmarks.lofo_paired \\
        --variant benchmarks/results/forecast/lofo_ablations/default_grid \\
        --json benchmarks/results/forecast/lofo_ablations/default_grid/paired.json
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.lofo_near_miss import held_out, sampled_runs
from benchmarks.report_io import write_report
from grokwatch.forecast.commands import _json_safe
from grokwatch.forecast.lofo import (
    BOOTSTRAP_DRAWS,
    INTERVAL_KEYS,
    forecasts_of,
    goal_numbers,
    outcome_draws,
    percentile_interval,
)

BASE = Path("benchmarks/results/forecast")
SAME = ("corpora", "cap_per_family", "seed", "cadence")
"""Settings two records must share to be compared run for run."""


Held = tuple[str, list[Any], dict[str, Any], float]
"""A held-out family of a record: its name, runs, their forecasts and the alert threshold."""


def open_record(source: Path) -> tuple[Path, Iterable[Held]]:
    """The record's directory and its held-out families: ``source`` itself, forecast family by
    family by its fold models here, or the directory and families a ``--save`` file holds (the
    file read once)."""
    if source.is_dir():
        held = ((family, runs, forecasts_of(model, runs), model.alert_threshold_)
                for family, model, runs in held_out(source))  # fmt: skip
        return source, held
    with source.open("rb") as f:
        saved = pickle.load(f)
    return Path(saved["record"]), saved["families"]


def save(record: Path, path: Path) -> None:
    """Write the held-out runs and forecasts of ``record`` to ``path`` (see the docstring)."""
    _, families = open_record(record)
    with path.open("wb") as f:
        pickle.dump({"record": str(record), "families": list(families)}, f)


def compare(
    base: Path, variant: Path, draws: int = BOOTSTRAP_DRAWS, outside: Path | None = None
) -> dict[str, Any]:
    """The paired comparison of the module docstring (JSON-ready)."""
    opened = {"base": open_record(base), "variant": open_record(variant)}
    records = {name: json.loads((d / "lofo.json").read_text()) for name, (d, _) in opened.items()}
    a, b = records["base"]["settings"], records["variant"]["settings"]
    differ = [k for k in SAME if a.get(k) != b.get(k)]
    if differ:
        raise SystemExit(f"the records are not of the same runs: {', '.join(differ)} differ")
    known: set[str] = set()  # the runs of the record --outside names: left out
    if outside is not None:
        seen = json.loads((outside / "lofo.json").read_text())["settings"]
        known = {r.run_id for r in sampled_runs(seen)}
    families: dict[str, Any] = {}
    n_runs: dict[str, int] = {}
    diffs_by_family: dict[str, dict[str, list[float]]] = {}
    for (fam, runs_a, fc_a, th_a), (fam_b, runs_b, fc_b, th_b) in zip(
        opened["base"][1], opened["variant"][1], strict=True
    ):
        if fam != fam_b:
            raise SystemExit(f"the records hold other families: {fam} against {fam_b}")
        runs = {"base": [r for r in runs_a if r.run_id not in known],
                "variant": [r for r in runs_b if r.run_id not in known]}  # fmt: skip
        n_runs[fam] = len(runs["base"])
        forecasts = {"base": fc_a, "variant": fc_b}
        thresholds = {"base": th_a, "variant": th_b}
        points = {}
        for name in runs:
            point = goal_numbers(runs[name], forecasts[name], thresholds[name])
            points[name] = point
            for k in INTERVAL_KEYS if outside is None else ():  # the record's runs and forecasts
                want = records[name]["families"][fam][k]
                if not math.isclose(point[k], want, rel_tol=1e-9, abs_tol=1e-12) and not (
                    math.isnan(point[k]) and want is None
                ):
                    raise SystemExit(f"{name} {fam} {k}: {point[k]} here, {want} in its record")
        by_id = {name: {r.run_id: r for r in runs[name]} for name in runs}
        if set(by_id["base"]) != set(by_id["variant"]):
            raise SystemExit(f"{fam}: the records hold different runs")
        diffs: dict[str, list[float]] = {k: [] for k in INTERVAL_KEYS}
        for sample in outcome_draws(runs["base"], draws):
            ours = {name: [by_id[name][r.run_id] for r in sample] for name in runs}
            x = goal_numbers(ours["base"], forecasts["base"], thresholds["base"])
            y = goal_numbers(ours["variant"], forecasts["variant"], thresholds["variant"])
            for k in INTERVAL_KEYS:
                diffs[k].append(y[k] - x[k])
        diffs_by_family[fam] = diffs
        was, now = points["base"], points["variant"]
        families[fam] = {k: _entry(_finite(was[k]), _finite(now[k]), diffs[k], draws)
                         for k in INTERVAL_KEYS}  # fmt: skip
    macro = {}
    for k in INTERVAL_KEYS:
        per_draw = np.nanmean([diffs_by_family[f][k] for f in families], axis=0)
        was, now = (_mean(f[k]["base"] for f in families.values()),
                    _mean(f[k]["variant"] for f in families.values()))  # fmt: skip
        macro[k] = _entry(was, now, per_draw.tolist(), draws)
    out: dict[str, Any] = {name: str(d) for name, (d, _) in opened.items()}
    if outside is not None:
        out |= {"outside": str(outside), "n_runs": n_runs}
    return out | {"draws": draws, "families": families, "macro": macro}


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _mean(values: Any) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _entry(x: float | None, y: float | None, diffs: list[float], draws: int) -> dict[str, Any]:
    span = percentile_interval(diffs, draws)
    return {
        "base": x,
        "variant": y,
        "difference": None if x is None or y is None else y - x,
        "interval": span,
        "decided": None if span is None else bool(span[0] > 0 or span[1] < 0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, default=BASE, help="the headline's OUT (default)")
    ap.add_argument("--variant", type=Path, help="the ablation's OUT")
    ap.add_argument("--draws", type=int, default=BOOTSTRAP_DRAWS)
    ap.add_argument("--outside", type=Path, help="only the runs this record does not hold")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--save", type=Path, help="write --record's forecasts here and stop")
    ap.add_argument("--record", type=Path, help="the record --save forecasts")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.save is not None:
        if args.record is None:
            ap.error("--save needs --record")
        save(args.record, args.save)
        print(f"wrote {args.save} in {time.perf_counter() - t0:.1f} s")
        return
    if args.variant is None or args.json is None:
        ap.error("the comparison needs --variant and --json")
    result = compare(args.base, args.variant, args.draws, args.outside)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    write_report(args.json, _json_safe(result))
    print(f"wrote {args.json} in {result['seconds']} s")


if __name__ == "__main__":
    main()
