"""Memory per live run of the detector service.

A fresh ``grokwatch serve`` gets ``--runs`` live runs, each with ``--points`` evaluations of
twelve values (posted in batches of up to 500). The service's resident set size (``VmRSS``) is
read before and after; the difference per 1000 runs is the figure to compare with the target.
The detector keeps the measures it reads of every evaluation of a live run (it replays them when
points arrive out of order), so the cost grows with the history length: run it for several
lengths.

    python benchmarks/service_memory.py [--runs 1000] [--points 1 100 1000]
        [--forecaster default|none] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from service_common import MEASURES, Server, wait_for_forecasts


def body(start: int, n: int, rng: random.Random) -> dict[str, Any]:
    pts = []
    for step in range(start, start + n):
        values = {m: round(rng.random(), 6) for m in MEASURES}
        values.update(train_accuracy=1.0, test_accuracy=round(0.05 + 0.05 * rng.random(), 6))
        pts.append({"step": step, "values": values})
    return {"points": pts}


def measure(runs: int, points: int, forecaster: str) -> dict[str, Any]:
    rng = random.Random(0)
    with (
        tempfile.TemporaryDirectory() as tmp,
        Server(Path(tmp) / "mem.db", forecaster=forecaster) as server,
    ):
        time.sleep(0.5)
        before = server.rss_bytes()
        with httpx.Client(base_url=server.url, timeout=60) as c:
            for i in range(runs):
                c.post("/v1/runs", json={"run_id": f"run-{i}"}).raise_for_status()
                for start in range(0, points, 500):
                    n = min(500, points - start)
                    c.post(f"/v1/runs/run-{i}/points", json=body(start, n, rng)).raise_for_status()
            ready = c.get("/readyz").json()
            backlog = wait_for_forecasts(c)
        time.sleep(0.5)
        after = server.rss_bytes()
    per_1000 = (after - before) / runs * 1000
    return {
        "runs": runs,
        "points_per_run": points,
        "live_runs": ready["live_runs"],
        "forecast_backlog_runs": backlog,
        "rss_before_mb": round(before / 2**20, 1),
        "rss_after_mb": round(after / 2**20, 1),
        "mb_per_1000_runs": round(per_1000 / 2**20, 1),
        "kb_per_run": round((after - before) / runs / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--points", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--forecaster", default="default", help="'default' or 'none'")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = []
    for k in args.points:
        res = measure(args.runs, k, args.forecaster)
        res["forecaster"] = args.forecaster
        print(json.dumps(res))
        results.append(res)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
