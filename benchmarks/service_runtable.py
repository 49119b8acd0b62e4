"""In-process cost of the detector service's ingest path, without HTTP.

Drives :class:`~grokwatch.service.state.RunTable` directly over a fresh SQLite database (WAL,
as ``grokwatch serve`` opens it): every round posts one batch of ``--batch`` points of twelve
values to each of ``--runs`` live runs, through the same three stages a request goes through
-- parsing the JSON body into a ``PointsBatch``, ``RunTable.ingest`` (store, then detector)
and rendering the ``IngestResult`` -- then the forecasts the answers left behind, and times
each stage. ``--group`` batches are ingested
together (``RunTable.ingest_many``: one transaction), as the service's worker does with the
requests queued behind each other. Reports points/s and CPU microseconds per point and per
stage. Then memory: Python heap (``tracemalloc``, numpy included) held per live run after
``--mem-points`` evaluations each, for ``--mem-runs`` runs.

    python benchmarks/service_runtable.py [--runs 200] [--batch 1 10 100] [--group 1 16]
        [--rounds 5] [--forecaster none default] [--mem-runs 100] [--mem-points 1 100]
        [--json OUT]

The numbers are one core's worth of the server's work: HTTP framing and the event loop come on
top (``benchmarks/service_ingest.py`` measures the whole service).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import platform
import random
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from service_common import MEASURES

from grokwatch.service.live import detector_for, load_forecaster
from grokwatch.service.payloads import ingest_result
from grokwatch.service.state import RunTable
from grokwatch.store import SQLiteStore
from grokwatch.wire import PointsBatch, RunCreate


def body(start: int, n: int, rng: random.Random) -> bytes:
    """A batch on the post-memorization plateau (as ``service_memory.py`` sends)."""
    pts = []
    for step in range(start, start + n):
        values = {m: round(rng.random(), 6) for m in MEASURES}
        values.update(train_accuracy=1.0, test_accuracy=round(0.05 + 0.05 * rng.random(), 6))
        pts.append({"step": step * 100, "values": values})
    return json.dumps({"points": pts}, separators=(",", ":")).encode()


def table(path: Path, forecaster: str, runs: int) -> RunTable:
    factory = functools.partial(detector_for, forecaster=load_forecaster(forecaster))
    t = RunTable(SQLiteStore(path), detector_factory=factory)
    for i in range(runs):
        t.register(RunCreate(run_id=f"run-{i}", budget=100_000))
    return t


def throughput(forecaster: str, runs: int, batch: int, group: int, rounds: int) -> dict[str, Any]:
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        t = table(Path(tmp) / "bench.db", forecaster, runs)
        ids = [f"run-{i}" for i in range(runs)]
        for rid in ids:  # warm-up: every run past its first evaluations
            t.ingest(rid, PointsBatch.model_validate_json(body(0, 5, rng)))
        t.backlog.flush_oldest()
        bodies = [[body(5 + r * batch, batch, rng) for _ in ids] for r in range(rounds)]
        stages = {"parse": 0.0, "ingest": 0.0, "render": 0.0, "forecast": 0.0}
        gc.collect()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for r in range(rounds):
            for g in range(0, runs, group):
                a = time.perf_counter()
                parsed = [
                    (ids[i], PointsBatch.model_validate_json(bodies[r][i]))
                    for i in range(g, min(g + group, runs))
                ]
                b = time.perf_counter()
                done = t.ingest_many(parsed)
                c = time.perf_counter()
                for d in done:
                    assert not isinstance(d, Exception)
                    ingest_result(d).model_dump_json()
                d = time.perf_counter()
                t.backlog.flush_oldest()  # the forecasts the answers left for right after
                stages["parse"] += b - a
                stages["ingest"] += c - b
                stages["render"] += d - c
                stages["forecast"] += time.perf_counter() - d
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        t.store.close()
    n = runs * rounds * batch
    return {
        "forecaster": forecaster,
        "runs": runs,
        "points_per_request": batch,
        "requests_per_transaction": group,
        "points": n,
        "points_per_s": round(n / wall),
        "cpu_us_per_point": round(cpu / n * 1e6, 2),
        **{f"{k}_us_per_point": round(v / n * 1e6, 2) for k, v in stages.items()},
    }


def memory(forecaster: str, runs: int, points: int) -> dict[str, Any]:
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        t = table(Path(tmp) / "mem.db", forecaster, 0)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(runs):
            rid = f"run-{i}"
            t.register(RunCreate(run_id=rid, budget=100_000))
            for start in range(0, points, 500):
                n = min(500, points - start)
                t.ingest(rid, PointsBatch.model_validate_json(body(start, n, rng)))
        t.backlog.flush_oldest()  # what the service holds once no forecast waits
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert len(t) == runs
        t.store.close()
    per_run = (after - before) / runs
    return {
        "forecaster": forecaster,
        "runs": runs,
        "points_per_run": points,
        "kb_per_run": round(per_run / 1024, 2),
        "mb_per_1000_runs": round(per_run * 1000 / 2**20, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 10, 100])
    ap.add_argument("--group", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--forecaster", nargs="+", default=["none", "default"])
    ap.add_argument("--mem-runs", type=int, default=100)
    ap.add_argument("--mem-points", type=int, nargs="*", default=[1, 100])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out: dict[str, Any] = {"machine": platform.platform(), "throughput": [], "memory": []}
    for fc in args.forecaster:
        for batch in args.batch:
            for group in args.group:
                row = throughput(fc, args.runs, batch, group, args.rounds)
                print(json.dumps(row), flush=True)
                out["throughput"].append(row)
        for points in args.mem_points:
            row = memory(fc, args.mem_runs, points)
            print(json.dumps(row), flush=True)
            out["memory"].append(row)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
