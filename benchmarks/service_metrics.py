"""``/metrics`` render time of the detector service at a given number of live series.

Live runs (each with one evaluation of twelve values, on its post-memorization plateau) are
added until the exposition holds about ``--series`` samples; then the exposition is rendered
``--repeats`` times. Two measurements:

- **in-process**: ``prometheus_client.generate_latest`` over the service's own registry (the
  run collector, the service counters and the latency histogram), with the garbage-collector
  thresholds ``grokwatch serve`` sets;
- **HTTP**: ``GET /metrics`` against a real ``grokwatch serve`` (rendered on a thread).

    python benchmarks/service_metrics.py [--series 1000 10000] [--repeats 20]
        [--forecaster default|none] [--json OUT]
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from service_common import MEASURES, Server, wait_for_forecasts

from grokwatch.service.live import detector_for, load_forecaster
from grokwatch.service.settings import ServiceSettings
from grokwatch.service.state import RunTable
from grokwatch.service.telemetry import ServiceMetrics
from grokwatch.store import MemoryStore
from grokwatch.wire import PointsBatch, RunCreate


def point(rng: random.Random) -> dict[str, Any]:
    values = {m: round(rng.random(), 6) for m in MEASURES}
    values.update(train_accuracy=1.0, test_accuracy=0.07)
    return {"step": 1000, "values": values}


def samples(text: str) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def in_process(series: int, repeats: int, forecaster: str) -> dict[str, Any]:
    threshold = ServiceSettings().gc_threshold  # what `grokwatch serve` runs with
    if threshold is not None:
        gc.set_threshold(*threshold)
    rng = random.Random(0)
    factory = functools.partial(detector_for, forecaster=load_forecaster(forecaster))
    table = RunTable(MemoryStore(), detector_factory=factory)
    registry = CollectorRegistry(auto_describe=False)
    metrics = ServiceMetrics(registry)
    metrics.table = table
    per_run = 0
    runs = 0
    while True:
        rid = f"run-{runs}"
        table.register(RunCreate(run_id=rid))
        table.ingest(rid, PointsBatch.model_validate({"points": [point(rng)]}))
        runs += 1
        if runs == 1:
            base = samples(generate_latest(registry).decode())
            per_run = base  # counts the fixed service series too; refined below
        if runs == 2:
            per_run = samples(generate_latest(registry).decode()) - base
        if runs >= 2 and base + (runs - 1) * per_run >= series:
            break
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        text = generate_latest(registry)
        times.append(time.perf_counter() - t0)
    return {
        "where": "in-process",
        "runs": runs,
        "series": samples(text.decode()),
        "bytes": len(text),
        "render_ms_median": round(statistics.median(times) * 1e3, 2),
        "render_ms_max": round(max(times) * 1e3, 2),
    }


def over_http(series: int, runs: int, repeats: int, forecaster: str) -> dict[str, Any]:
    rng = random.Random(0)
    with (
        tempfile.TemporaryDirectory() as tmp,
        Server(Path(tmp) / "m.db", forecaster=forecaster) as server,
        httpx.Client(base_url=server.url, timeout=30) as c,
    ):
        for i in range(runs):
            c.post("/v1/runs", json={"run_id": f"run-{i}"}).raise_for_status()
            body = {"points": [point(rng)]}
            c.post(f"/v1/runs/run-{i}/points", json=body).raise_for_status()
        if wait_for_forecasts(c):
            raise RuntimeError("forecasts still waiting: the exposition is not complete")
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            text = c.get("/metrics").text
            times.append(time.perf_counter() - t0)
    return {
        "where": "http",
        "runs": runs,
        "series": samples(text),
        "get_ms_median": round(statistics.median(times) * 1e3, 2),
        "get_ms_max": round(max(times) * 1e3, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--forecaster", default="default", help="'default' or 'none'")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = []
    for n in args.series:
        local = in_process(n, args.repeats, args.forecaster)
        print(json.dumps(local))
        remote = over_http(n, local["runs"], args.repeats, args.forecaster)
        print(json.dumps(remote))
        results += [local, remote]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
