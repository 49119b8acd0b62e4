"""What storing a point's measure names once per set (store schema 3) saves over writing them
into every record (schema 2), side by side in one run.

Both variants insert the same points -- ``--runs`` runs, batches of ``--batch`` points of the
twelve measures the service benchmarks send, one transaction per batch, WAL and
``synchronous=NORMAL`` as :class:`grokwatch.store.SQLiteStore` opens its file -- into the same
``points`` table; they differ only in the record: schema 2's names as a JSON array and a NUL
byte before the float64s, schema 3's byte 1 and a four-byte measure-set id. The variants
alternate over ``--repeats`` fresh databases; the best time of each is reported, with the
database size.

    python benchmarks/store_records.py [--runs 32] [--batch 500] [--batches 20] [--repeats 3]
        [--json benchmarks/results/store_records.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

from service_common import MEASURES

from grokwatch.records import names_prefix, set_prefix

NAMES = (*MEASURES, "train_accuracy", "test_accuracy")
RECORDS = {  # the record prefixes grokwatch.store writes
    "schema 2 (names in every record)": names_prefix(NAMES),
    "schema 3 (names once per set)": set_prefix(1),
}


def insert(path: Path, prefix: bytes, runs: int, batch: int, batches: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        'CREATE TABLE points (run_id TEXT NOT NULL, step INTEGER NOT NULL, "values" BLOB'
        " NOT NULL, PRIMARY KEY (run_id, step)) WITHOUT ROWID"
    )
    body = struct.pack(f"<{len(NAMES)}d", *(0.125 * i for i in range(len(NAMES))))
    began = time.perf_counter()
    for b in range(batches):
        for r in range(runs):
            rows = [(f"run-{r}", b * batch + s, prefix + body) for s in range(batch)]
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR IGNORE INTO points VALUES (?,?,?)", rows)
            db.execute("COMMIT")
    elapsed = time.perf_counter() - began
    db.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=32)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    points = args.runs * args.batch * args.batches
    best = {name: float("inf") for name in RECORDS}
    size = {}
    for _ in range(args.repeats):
        for name, prefix in RECORDS.items():
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "points.db"
                best[name] = min(best[name], insert(path, prefix, args.runs, args.batch,
                                                    args.batches))  # fmt: skip
                size[name] = sum(f.stat().st_size for f in Path(tmp).iterdir()) / 2**20
    rows: list[dict[str, Any]] = []
    for name in RECORDS:
        rows.append({
            "record": name,
            "record_bytes": len(RECORDS[name]) + 8 * len(NAMES),
            "us_per_point": round(best[name] / points * 1e6, 2),
            "db_mb": round(size[name], 1),
        })  # fmt: skip
        print(json.dumps(rows[-1]))
    old, new = rows
    print(f"schema 3 / schema 2: time {new['us_per_point'] / old['us_per_point']:.2f}, "
          f"size {new['db_mb'] / old['db_mb']:.2f}")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        out = {"machine": platform.platform(), "cpus": os.cpu_count(), "points": points,
               "batch": args.batch, "results": rows}  # fmt: skip
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
