"""Cost of one detector update with the forecaster, for one run (issue 4: <= 2 ms).

Replays stored corpus runs (or, without a corpus, seeded synthetic ones) point by point
through ``RunDetector`` with the shipped forecaster and without any, and times every
``observe`` call. Every replay is repeated and each update's minimum kept (the machine is
shared; the raw first replay is reported too). Reports mean / median / p99 per update at
the corpus cadence (50 steps), at 250 and at the agent's default (500 steps), the
forecaster's own share (features + change points, then the model), and a long run (100k
steps at cadence 50, 2000 updates) to show the cost does not grow with the history.

    python benchmarks/forecast_update_cost.py [--corpus trainer/data/corpus_v1] [--runs 20]
        [--repeats 5] [--json benchmarks/results/forecast/update_cost.json]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from grokwatch.detector import RunDetector
from grokwatch.forecast.features import FeatureState
from grokwatch.forecast.io import load_default
from grokwatch.forecast.online import Context, assemble
from grokwatch.forecast.replay import thin

Point = tuple[int, dict[str, float]]


def corpus_runs(directory: str, n: int) -> list[tuple[list[Point], int | None]]:
    from trainer.corpus import load

    runs = sorted(load(directory), key=lambda r: (-len(r.steps), r.run_id))[:n]
    out = []
    for r in runs:
        pts = [
            (int(s), {c: float(v) for c, v in zip(r.columns, r.values[i], strict=True)})
            for i, s in enumerate(r.steps)
        ]
        out.append((pts, r.labels.get("budget")))
    return out


def synthetic_run(n_steps: int, every: int, seed: int = 0) -> list[Point]:
    rng = np.random.default_rng(seed)
    pts = []
    for s in [1, *range(every, n_steps + 1, every)]:
        g = 1 / (1 + math.exp(-(s - n_steps * 0.6) / (n_steps * 0.02)))
        pts.append(
            (
                s,
                {
                    "train_accuracy": min(1.0, s / 300),
                    "test_accuracy": 0.02 + 0.97 * g,
                    "train_loss": 1 / (1 + s / 100),
                    "test_loss": 5 * (1 - g) + 0.1,
                    "weight_norm": 50 + 20 * math.log1p(s / 100) - 15 * g,
                    "weight_entropy": -3 * s / 1000,
                    "activation_sparsity": 0.5 + 0.1 * g + rng.normal(0, 0.003),
                    "spectral_entropy": 0.9 - 0.2 * g,
                    "grad_weight_cosine": 0.7,
                    "circuit_complexity_mean": 1 + g,
                    "mc_dropout_accuracy_var": 1e-4 * (1 + g),
                    "mc_dropout_accuracy_mean": 0.9 * g,
                    "softmax_collapse": 0.0,
                    "loss_spectral_energy": 1e-6,
                    "loss_hjorth_mobility": 0.08,
                    "fourier_gini": 0.1 + 0.3 * g,
                },
            )
        )
    return pts


def at_cadence(points: Sequence[Point], cadence: int) -> list[Point]:
    steps = np.array([s for s, _ in points])
    return [points[i] for i in thin(steps, cadence)]


def _min_over(repeats: list[list[float]]) -> list[float]:
    """Per-update minimum over repeated replays (the machine is shared: other processes'
    time slices land on random updates; the minimum is the update's own cost)."""
    return [min(ts) for ts in zip(*repeats, strict=True)]


def time_detector(
    runs: Sequence[tuple[list[Point], int | None]], forecaster: Any, repeats: int
) -> tuple[list[float], list[float]]:
    """``(min over repeats, first repeat raw)`` seconds per ``observe`` call."""
    all_times = []
    for _ in range(repeats):
        times: list[float] = []
        for pts, budget in runs:
            det = RunDetector(budget=budget, forecaster=forecaster)
            for step, values in pts:
                t0 = time.perf_counter()
                det.observe(step, values)
                times.append(time.perf_counter() - t0)
        all_times.append(times)
    return _min_over(all_times), all_times[0]


def time_parts(
    runs: Sequence[tuple[list[Point], int | None]], repeats: int
) -> dict[str, list[float]]:
    model = load_default()
    feats_r, pred_r = [], []
    for _ in range(repeats):
        feats, pred = [], []
        for pts, budget in runs:
            state = FeatureState(budget=budget)
            for step, values in pts:
                t0 = time.perf_counter()
                x = state.update(step, values)
                t1 = time.perf_counter()
                assemble(model, x, Context.of(state))
                t2 = time.perf_counter()
                feats.append(t1 - t0)
                pred.append(t2 - t1)
        feats_r.append(feats)
        pred_r.append(pred)
    return {
        "features_and_change_points": _min_over(feats_r),
        "model_and_assembly": _min_over(pred_r),
    }


def summary(times: Sequence[float]) -> dict[str, float]:
    us = sorted(t * 1e6 for t in times)
    return {
        "n": len(us),
        "mean_us": statistics.fmean(us),
        "median_us": statistics.median(us),
        "p99_us": us[min(len(us) - 1, int(0.99 * len(us)))],
        "max_us": us[-1],
    }


def chunks(times: Sequence[float], k: int = 4) -> Iterator[float]:
    size = max(len(times) // k, 1)
    for i in range(0, len(times), size):
        yield statistics.median(times[i : i + size]) * 1e6


def main() -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="trainer/data/corpus_v1")
    ap.add_argument("--runs", type=int, default=20, help="longest corpus runs to replay")
    ap.add_argument("--repeats", type=int, default=5, help="replays; per-update minimum kept")
    ap.add_argument("--json", default="benchmarks/results/forecast/update_cost.json")
    args = ap.parse_args()
    load_default()  # loading the model is a one-off, not an update
    try:
        base = corpus_runs(args.corpus, args.runs)
        source = f"{len(base)} longest runs of {args.corpus}"
    except Exception as exc:  # no corpus: synthetic runs
        print(f"no corpus ({exc}); synthetic runs")
        base = [(synthetic_run(10_000, 50, seed=i), 10_000) for i in range(args.runs)]
        source = f"{len(base)} synthetic runs"
    result: dict[str, Any] = {
        "source": source,
        "machine": f"{platform.machine()} {platform.python_implementation()} "
        f"{platform.python_version()}",
        "repeats": args.repeats,
        "cadences": {},
    }
    for cadence in (50, 250, 500):
        runs = [(at_cadence(p, cadence), b) for p, b in base]
        with_f, raw = time_detector(runs, "default", args.repeats)
        without, _ = time_detector(runs, None, args.repeats)
        parts = time_parts(runs, args.repeats)
        result["cadences"][str(cadence)] = {
            "detector_with_forecaster": summary(with_f),
            "detector_with_forecaster_raw": summary(raw),
            "detector_without_forecaster": summary(without),
            **{k: summary(v) for k, v in parts.items()},
        }
    long_run = [(synthetic_run(100_000, 50), 100_000)]
    long_times, _ = time_detector(long_run, "default", args.repeats)
    result["long_run_100k_steps"] = {
        **summary(long_times),
        "median_us_by_quarter": list(chunks(long_times)),
    }
    print(f"per-update cost of RunDetector.observe, one run ({source})")
    print(f"{'cadence':>8} {'part':<30} {'mean µs':>9} {'median':>8} {'p99':>8}")
    for cadence, parts_ in result["cadences"].items():
        for name, s in parts_.items():
            print(
                f"{cadence:>8} {name:<30} {s['mean_us']:>9.0f} {s['median_us']:>8.0f} "
                f"{s['p99_us']:>8.0f}"
            )
    lr = result["long_run_100k_steps"]
    quarters = ", ".join(f"{v:.0f}" for v in lr["median_us_by_quarter"])
    print(f"long run (2000 updates): median {lr['median_us']:.0f} µs; by quarter {quarters}")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
