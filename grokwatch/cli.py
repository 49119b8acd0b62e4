"""The ``grokwatch`` command: ``demo``, ``runs`` and ``report``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from grokwatch.agent import default_db_path


def _demo(args: argparse.Namespace) -> int:
    from grokwatch.demo import run_demo

    events = run_demo(
        args.out,
        steps=args.steps,
        metrics_port=args.metrics_port,
        db=args.db,
        threads=args.threads,
        quiet=args.quiet,
    )
    print(
        f"outcome {events['outcome']}: t_mem={events['t_mem']} t_grok={events['t_grok']} "
        f"gap={events['gap']} sharpness={events['sharpness']}"
    )
    print(f"wrote {Path(args.out) / 'events.json'} and {Path(args.out) / 'report.png'}")
    return 0


def _runs(args: argparse.Namespace) -> int:
    from grokwatch.store import SQLiteStore

    store = SQLiteStore(args.db or default_db_path())
    try:
        runs = store.list_runs()
    finally:
        store.close()
    if not runs:
        print("no runs")
        return 0
    print(f"{'run_id':<28} {'points':>7} {'outcome':<14} {'t_mem':>7} {'t_grok':>7} finished")
    for r in runs:
        s = r.summary
        print(
            f"{r.run_id:<28} {r.n_points:>7} {s.get('outcome', '-')!s:<14} "
            f"{s.get('t_mem')!s:>7} {s.get('t_grok')!s:>7} {'yes' if r.finished_at else 'no'}"
        )
    return 0


def _report(args: argparse.Namespace) -> int:
    from grokwatch.report import load_run, write_report
    from grokwatch.store import SQLiteStore

    store = SQLiteStore(args.db or default_db_path())
    try:
        run = load_run(store, args.run_id)
    finally:
        store.close()
    print(f"wrote {write_report(run, args.out)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grokwatch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="train a run that groks, with the agent attached")
    demo.add_argument("--out", default="out/demo", help="output directory")
    demo.add_argument("--steps", type=int, default=None, help="training steps (default 6000)")
    demo.add_argument("--metrics-port", type=int, default=None, help="serve /metrics on 127.0.0.1")
    demo.add_argument("--db", default=None, help="run database (default OUT/runs.db)")
    demo.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_demo)

    runs = sub.add_parser("runs", help="list the runs in a run database")
    runs.add_argument("--db", default=None, help=f"run database (default {default_db_path()})")
    runs.set_defaults(func=_runs)

    report = sub.add_parser("report", help="draw the report of a stored run")
    report.add_argument("run_id")
    report.add_argument("--db", default=None, help="run database")
    report.add_argument("--out", default="report.png", help="PNG path")
    report.set_defaults(func=_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, KeyError) as exc:
        print(f"grokwatch: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
