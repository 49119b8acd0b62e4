"""Change-point detectors on seeded synthetic trends: accuracy, delay and cost per update.

Each signal is flat on a log-step axis, bends at a known step (slope 0.5 per log-step after
it), with Gaussian noise, sampled at the corpus cadence (50) and the agent's (250), 100 seeds
per setting. For both methods (online Bayesian, windowed KernelCPD) it reports: the fraction
of signals with exactly one upward change point within a factor 1.5 of the true bend, the
median detection delay (steps from the bend to the report, as a fraction of the bend step),
false change points on straight noisy trends, and the cost per grid observation.

    python benchmarks/forecast_changepoints.py [--seeds 100] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from grokwatch.decision import Direction
from grokwatch.forecast.changepoints import BayesianOnlineCPD, LogTimeSlopes, WindowKernelCPD

METHODS = {"bayes": BayesianOnlineCPD, "kernel": WindowKernelCPD}


def run(method: Any, steps: np.ndarray, y: np.ndarray) -> tuple[list[Any], list[float]]:
    slopes, det = LogTimeSlopes(1), method(["m"])
    found, costs = [], []
    for s, v in zip(steps, y, strict=True):
        obs = slopes.update(int(s), np.array([v]))
        if obs is not None:
            t0 = time.perf_counter()
            found += det.update(*obs)
            costs.append(time.perf_counter() - t0)
    return found, costs


def main() -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--noise", type=float, default=0.003)
    ap.add_argument("--json", default="benchmarks/results/forecast/changepoints.json")
    args = ap.parse_args()
    out: dict[str, Any] = {"seeds": args.seeds, "noise": args.noise, "results": {}}
    print(f"{'method':<8}{'cadence':>8}{'hit':>7}{'delay':>8}{'false/run':>11}{'µs/obs':>9}")
    for name, method in METHODS.items():
        for every in (50, 250):
            steps = np.r_[1, np.arange(every, 12_001, every)].astype(float)
            hits, delays, false, costs = 0, [], 0, []
            for seed in range(args.seeds):
                rng = np.random.default_rng(seed)
                bend = float(rng.uniform(1000, 5000))
                lt = np.log(steps / bend)
                y = np.where(lt > 0, 0.5 * lt, 0.0) + rng.normal(0, args.noise, steps.size)
                found, c = run(method, steps, y)
                costs += c
                up = [cp for cp in found if cp.direction is Direction.UP]
                if len(up) == 1 and abs(math.log(up[0].step / bend)) < math.log(1.5):
                    hits += 1
                    delays.append((up[0].detected_at - bend) / bend)
                straight = 0.3 * np.log(steps) + rng.normal(0, args.noise, steps.size)
                false += len(run(method, steps, straight)[0])
            res = {
                "hit_rate": hits / args.seeds,
                "median_delay_fraction": statistics.median(delays) if delays else None,
                "false_per_straight_run": false / args.seeds,
                "median_cost_us": statistics.median(costs) * 1e6,
            }
            out["results"][f"{name}@{every}"] = res
            delay = res["median_delay_fraction"]
            print(
                f"{name:<8}{every:>8}{res['hit_rate']:>7.2f}"
                f"{(delay if delay is not None else float('nan')):>8.2f}"
                f"{res['false_per_straight_run']:>11.2f}{res['median_cost_us']:>9.0f}"
            )
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
