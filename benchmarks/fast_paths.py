"""What the online fast paths save, each timed against its slow path and checked equal to it.

The service's live target is 1000 runs reporting once a second (p99 <= 20 ms on two cores)
and <= 50 MB per 1000 live runs; with the forecaster every report costs one forecast. A fast
path stays only if its slow path would spend a visible share of that budget:

- ``GrokForecaster.predict_row`` against the estimator's array methods (``predict_proba``,
  ``predict_time``, ``predict_horizon_proba`` on ``x[None, :]``): everything one forecast needs;
- the detector's ``_Evaluations`` (floats in one array, -NaN for an absent measure) against a
  dict per evaluation: the memory of a run's kept history;
- ``_Evaluations.rows`` (the history handed to the forecaster as arrays) against a dict per
  evaluation converted by ``rows_of``: per point of a 500-point batch.

Every number is the median of ``--repeats`` timings (the machine may be shared); ``cores at
1000 forecasts/s`` is the CPU the path alone would take at the live target's rate (for the
per-point hand-over: 1000 reports of ten points a second).

    python benchmarks/fast_paths.py [--repeats 2000] [--json benchmarks/results/fast_paths.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from grokwatch.detector import _Evaluations, _measures_kept
from grokwatch.forecast.features import FEATURE_NAMES, INPUT_COLUMNS, INPUT_MEASURES, rows_of
from grokwatch.forecast.io import load_default

RATE = 1000  # forecasts per second at the live target


def median_us(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def rows(n: int, seed: int = 0) -> np.ndarray:
    """Feature rows like the online ones: mostly finite, some NaN (measures not reported)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURE_NAMES)))
    x[rng.random(x.shape) < 0.15] = np.nan
    return x


def paths(repeats: int) -> list[dict[str, Any]]:
    model = load_default()
    x = rows(200)
    out = []

    def slow_forecast(r: np.ndarray, step: int = 800) -> tuple[float, ...]:
        one, steps = r[None, :], np.array([step])
        t, lo, hi = model.predict_time(one, steps)
        ph = model.predict_horizon_proba(one, steps)
        return (float(model.predict_proba(one)[0, 1]), float(t[0]), float(lo[0]), float(hi[0]),
                float(ph[0]))  # fmt: skip

    def close(a: float, b: float) -> bool:
        return bool(np.isclose(a, b, rtol=1e-9, equal_nan=True))

    same = True
    for r in x:
        row = model.predict_row(r, 800)
        p, t, lo, hi, ph = slow_forecast(r)
        got = (row.p_budget, row.t_grok, row.t_low, row.t_high, row.p_horizon)
        same &= row.p_budget == p and all(
            close(a, b) for a, b in zip(got[1:], (t, lo, hi, ph), strict=True)
        )
    fast = median_us(lambda: model.predict_row(x[0], 800), repeats)
    slow = median_us(lambda: slow_forecast(x[0]), max(repeats // 4, 50))
    out.append({"path": "predict_row", "fast_us": fast, "slow_us": slow, "equal": same})
    history = _Evaluations(_measures_kept(frozenset(INPUT_COLUMNS)))
    rng = np.random.default_rng(2)
    batch = [(i * 10, {n: float(v) for n, v in zip(INPUT_COLUMNS, rng.random(len(INPUT_COLUMNS)),
                                                    strict=True) if v > 0.1})
             for i in range(500)]  # fmt: skip
    history.extend(batch)
    fast_rows = history.rows(0, INPUT_COLUMNS)
    assert fast_rows is not None
    slow_rows = rows_of([history.point(i) for i in range(len(history))], INPUT_COLUMNS)
    same = fast_rows[0] == slow_rows[0] and all(
        np.array_equal(a, b, equal_nan=True)
        for a, b in zip(fast_rows[1:], slow_rows[1:], strict=True)
    )
    reps = max(repeats // 20, 20)
    fast = median_us(lambda: history.rows(0, INPUT_COLUMNS), reps) / len(batch)
    slow = median_us(
        lambda: rows_of([history.point(i) for i in range(len(history))], INPUT_COLUMNS), reps
    ) / len(batch)
    # per point, at 1000 reports a second of ten points each: 10 000 points a second
    out.append({"path": "_Evaluations.rows (per point)", "fast_us": fast, "slow_us": slow,
                "equal": bool(same), "rate": 10 * RATE})  # fmt: skip
    for entry in out:
        rate = entry.pop("rate", RATE)
        entry["slow_cores_at_1000_per_s"] = entry["slow_us"] * rate / 1e6
        entry["fast_cores_at_1000_per_s"] = entry["fast_us"] * rate / 1e6
    return out


def history_memory(evaluations: int = 100, runs: int = 200) -> dict[str, Any]:
    """Bytes per run of a kept history of ``evaluations`` evaluations with the forecaster's
    measures, as ``_Evaluations`` and as one dict per evaluation."""
    rng = np.random.default_rng(1)
    names = sorted(INPUT_MEASURES)[:12]
    points = [
        [(i * 100, {n: float(v) for n, v in zip(names, rng.random(12), strict=True)})
         for i in range(evaluations)]
        for _ in range(runs)
    ]  # fmt: skip
    keep = _measures_kept(frozenset(INPUT_MEASURES))

    def measure(build: Callable[[list[Any]], Any]) -> float:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        kept = [build(p) for p in points]
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        del kept
        return used / runs

    def compact(p: list[Any]) -> _Evaluations:
        e = _Evaluations(keep)
        e.extend(p)
        return e

    def dicts(p: list[Any]) -> list[tuple[int, dict[str, float]]]:
        return [(s, {k: float(v) for k, v in d.items()}) for s, d in p]

    same = all(list(compact(p)) == dicts(p) for p in points[:20])
    fast, slow = measure(compact), measure(dicts)
    return {
        "path": "_Evaluations",
        "evaluations_per_run": evaluations,
        "fast_bytes_per_run": fast,
        "slow_bytes_per_run": slow,
        "fast_mb_per_1000_runs": fast * 1000 / 2**20,
        "slow_mb_per_1000_runs": slow * 1000 / 2**20,
        "equal": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = {"timings": paths(args.repeats), "memory": history_memory()}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if not all(e["equal"] for e in [*result["timings"], result["memory"]]):
        sys.exit("a fast path differs from its slow path")


if __name__ == "__main__":
    main()
