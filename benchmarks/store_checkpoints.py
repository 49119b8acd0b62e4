"""How long a commit takes with SQLite's own WAL checkpoints and with the checkpoint thread.

The service commits every report on the event loop, so a slow commit delays every request
behind it. By default SQLite checkpoints inside the commit that takes the log past 1000 pages;
``SQLiteStore(checkpoint_interval=...)`` leaves that to a thread of its own. This writes the
same load to a fresh database both ways, side by side in one process -- ``--rate`` commits a
second of ``--points``-point batches of twelve values, spread over ``--runs`` runs, for
``--seconds`` -- and reports the commit-time percentiles, the slowest commit and how many
commits took longer than 2 ms.

    python benchmarks/store_checkpoints.py [--seconds 10] [--rate 500] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from service_common import MEASURES, percentile

from grokwatch.store import SQLiteStore


def commits(checkpoint_interval: float | None, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "c.db", checkpoint_interval=checkpoint_interval)
        runs = [f"run-{i}" for i in range(args.runs)]
        for run in runs:
            store.create_run(run, {})
        took, step = [], 0
        start = time.perf_counter()
        n = int(args.seconds * args.rate)
        for i in range(n):
            pause = start + i / args.rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            points = [(step + j, {m: rng.random() for m in MEASURES}) for j in range(args.points)]
            t0 = time.perf_counter()
            store.add_points(runs[i % len(runs)], points)
            took.append(time.perf_counter() - t0)
            if i % len(runs) == len(runs) - 1:
                step += args.points
        rounds = store.checkpoints
        store.close()
    return {
        "checkpoints": "SQLite's"
        if checkpoint_interval is None
        else f"thread, {checkpoint_interval:g} s",
        "commits": n,
        "p50_ms": round(percentile(took, 50) * 1e3, 3),
        "p99_ms": round(percentile(took, 99) * 1e3, 3),
        "p999_ms": round(percentile(took, 99.9) * 1e3, 3),
        "max_ms": round(max(took) * 1e3, 2),
        "over_2ms": sum(t > 0.002 for t in took),
        "thread_rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=500.0, help="commits per second")
    parser.add_argument("--points", type=int, default=10)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = [commits(None, args), commits(1.0, args)]
    for row in rows:
        print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
