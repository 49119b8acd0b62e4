"""The ``grokwatch`` command: ``demo``, ``runs``, ``report``, ``serve``, ``sync``, ``fit`` and
``evaluate``."""

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
    from grokwatch.report import write_report
    from grokwatch.rundata import load_run
    from grokwatch.store import SQLiteStore

    store = SQLiteStore(args.db or default_db_path())
    try:
        run = load_run(store, args.run_id)
    finally:
        store.close()
    print(f"wrote {write_report(run, args.out)}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from grokwatch.service.server import serve
    from grokwatch.service.settings import ServiceSettings

    overrides = {
        "host": args.host,
        "port": args.port,
        "db_path": args.db,
        "token": args.token,
        "max_body_bytes": args.max_body_bytes,
        "max_live_runs": args.max_live_runs,
        "finished_ttl": args.finished_ttl,
        "idle_ttl": args.idle_ttl,
        "log_level": args.log_level,
        "access_log": args.access_log or None,
        "forecaster": args.forecaster,
    }
    settings = ServiceSettings(**{k: v for k, v in overrides.items() if v is not None})
    serve(settings)
    return 0


def _sync(args: argparse.Namespace) -> int:
    import os

    from grokwatch.http_transport import sync

    url = args.detector or os.environ.get("GROKWATCH_DETECTOR")
    if not url:
        raise ValueError("name the service with --detector URL (or set GROKWATCH_DETECTOR)")
    token = args.token or os.environ.get("GROKWATCH_TOKEN")
    result = sync(args.spool, url, token=token, timeout=args.timeout, keep=args.keep)
    print(
        f"{result.files} spool file(s): {result.sent} operations sent, {result.refused} "
        f"refused, {result.corrupt_lines} unreadable lines skipped"
    )
    for path in result.kept:
        print(f"kept {path}")
    return 1 if result.unsent else 0


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _fit(args: argparse.Namespace) -> int:
    from grokwatch.forecast.commands import fit_model

    fit_model(
        args.corpus,
        args.out,
        split=args.split,
        folds=args.folds,
        far=args.far,
        C_grid=_floats(args.C),
        classifier=args.classifier,
        cadences=_ints(args.cadences),
        fold_by=args.fold_by,
        calibrate=args.calibrate,
        seed=args.seed,
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from grokwatch.detector import resolve_forecaster
    from grokwatch.forecast.commands import evaluate_corpus, evaluate_lofo
    from grokwatch.forecast.forecaster import GrokForecaster

    model = resolve_forecaster(args.model)
    if not isinstance(model, GrokForecaster):
        raise ValueError(f"--model must name a GrokForecaster file, got {args.model!r}")
    if args.lofo:
        evaluate_lofo(
            [c for c in args.corpus.split(",") if c],
            out=args.out,
            cadence=args.cadence,
            folds=args.folds,
            fold_by=args.fold_by,
            calibrate=args.calibrate,
            C_grid=_floats(args.C),
            shipped=model,
            plots=not args.no_plots,
            name="lofo" if args.cadence is None else f"lofo_cadence{args.cadence}",
        )
        return 0
    evaluate_corpus(
        args.corpus,
        model=model,
        out=args.out,
        splits=[s for s in args.split.split(",") if s],
        calibration_split=args.calibration_split,
        cadence=args.cadence,
        timelines=args.timelines,
        plots=not args.no_plots,
    )
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

    serve = sub.add_parser(
        "serve",
        help="run the detector service (settings also from GROKWATCH_* variables)",
    )
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="bind port (default 8321)")
    serve.add_argument("--db", default=None, help="SQLite run database of the service")
    serve.add_argument("--token", default=None, help="bearer token required for writes")
    serve.add_argument("--max-body-bytes", type=int, default=None, help="request body limit")
    serve.add_argument("--max-live-runs", type=int, default=None, help="cap on live runs")
    serve.add_argument("--finished-ttl", type=float, default=None, help="seconds exported")
    serve.add_argument("--idle-ttl", type=float, default=None, help="seconds without reports")
    serve.add_argument(
        "--log-level", choices=["critical", "error", "warning", "info", "debug"], default=None
    )
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument(
        "--forecaster", default=None, help="'default' (shipped model), 'none', or a model file"
    )
    serve.set_defaults(func=_serve)

    sync = sub.add_parser("sync", help="replay spooled records to a detector service")
    sync.add_argument("spool", nargs="+", help="spool files or directories of *.jsonl files")
    sync.add_argument("--detector", default=None, help="service URL(s), comma-separated")
    sync.add_argument("--token", default=None, help="bearer token (default $GROKWATCH_TOKEN)")
    sync.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    sync.add_argument("--keep", action="store_true", help="keep the files after replaying")
    sync.set_defaults(func=_sync)

    fit = sub.add_parser(
        "fit", help="fit the grokking forecaster on a corpus (grouped CV, validation thresholds)"
    )
    fit.add_argument("--corpus", required=True, help="corpus directory (trainer/data/corpus)")
    fit.add_argument("--out", required=True, help="model file to write (.npz)")
    fit.add_argument(
        "--split", default="train", help="corpus split(s) to fit on, comma-sep. (default train)"
    )
    fit.add_argument("--folds", type=int, default=5, help="grouped CV folds (default 5)")
    fit.add_argument("--far", type=float, default=0.05, help="validation false-alarm budget")
    fit.add_argument("--C", default="0.3,1,3", help="inverse penalties to try, comma-sep.")
    fit.add_argument(
        "--classifier", choices=["trees", "gam"], default="trees", help="P(grok) model"
    )
    fit.add_argument("--cadences", default="250,500", help="extra evaluation cadences to train on")
    fit.add_argument(
        "--fold-by", choices=["config", "family"], default="config", help="inner CV groups"
    )
    fit.add_argument(
        "--calibrate",
        choices=["none", "isotonic"],
        default="none",
        help="isotonic map of P fitted on the out-of-fold forecasts",
    )
    fit.add_argument("--seed", type=int, default=0, help="fold assignment seed")
    fit.set_defaults(func=_fit)

    ev = sub.add_parser(
        "evaluate", help="evaluate the forecaster and the published baselines on held-out runs"
    )
    ev.add_argument("--corpus", required=True, help="corpus directory")
    ev.add_argument("--model", default="default", help="model file (default: the shipped one)")
    ev.add_argument("--out", default=None, help="directory for evaluation.json and figures")
    ev.add_argument("--split", default="eval,heldout", help="splits to evaluate, comma-sep.")
    ev.add_argument(
        "--calibration-split", default="train", help="runs that set baseline thresholds"
    )
    ev.add_argument("--cadence", type=int, default=None, help="thin runs to this cadence")
    ev.add_argument("--timelines", type=int, default=3, help="timeline figures per family")
    ev.add_argument("--no-plots", action="store_true", help="JSON and tables only")
    lofo = ev.add_argument_group("leave one family out (--lofo)")
    lofo.add_argument(
        "--lofo",
        action="store_true",
        help="fit on all families but one, evaluate on it, for every family (--corpus may "
        "list several directories, comma-separated; --model is scored on the families it "
        "never saw, side by side)",
    )
    lofo.add_argument("--folds", type=int, default=5, help="grouped CV folds within training")
    lofo.add_argument(
        "--fold-by",
        choices=["config", "family"],
        default="family",
        help="group the inner CV by family (default) or by configuration",
    )
    lofo.add_argument(
        "--calibrate",
        choices=["isotonic", "none"],
        default="isotonic",
        help="map P through an isotonic fit on the inner out-of-fold forecasts",
    )
    lofo.add_argument("--C", default="1", help="inverse penalties to try, comma-sep.")
    ev.set_defaults(func=_evaluate)
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
