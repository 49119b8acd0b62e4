"""The ``grokwatch`` command: ``demo``, ``runs``, ``show``, ``report``, ``serve``, ``sync``,
``fit`` and ``evaluate``.

Only the standard library is imported at start, so ``grokwatch --help`` and every command's
``--help`` answer at once; each command imports what it needs when it runs
(``benchmarks/cli_help.py`` times them).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from grokwatch.store import RunRecord, SQLiteStore
    from grokwatch.timeline import Timeline

DB_HELP = (
    "run database (default: $GROKWATCH_DB, else $GROKWATCH_HOME/runs.db, else ~/.grokwatch/runs.db)"
)


class CommandError(Exception):
    """A command that cannot go on; its message says what was looked for, where, what to do."""


def _db(args: argparse.Namespace) -> tuple[Path, str]:
    """The database a command reads and why that one (for error messages)."""
    if args.db:
        return Path(args.db), "--db"
    if "GROKWATCH_DB" in os.environ:
        return Path(os.environ["GROKWATCH_DB"]), "$GROKWATCH_DB"
    from grokwatch.agent import default_db_path

    return default_db_path(), "the default"


def _open_store(args: argparse.Namespace) -> tuple[SQLiteStore, Path]:
    """The run database named by ``--db`` (or the default), which must exist."""
    path, why = _db(args)
    if not path.exists():
        raise CommandError(
            f"no run database at {path} ({why}). The agent writes one when a run trains "
            "(`grokwatch demo --out DIR` writes DIR/runs.db); name another with --db PATH "
            "or GROKWATCH_DB."
        )
    from grokwatch.store import SQLiteStore

    return SQLiteStore(path), path


def _find_run(store: SQLiteStore, path: Path, run_id: str) -> RunRecord:
    """The run ``run_id``, or the only run whose id starts with it."""
    from grokwatch.exceptions import UnknownRunError

    try:
        return store.get_run(run_id)
    except UnknownRunError:
        runs = store.list_runs()
    matches = [r for r in runs if r.run_id.startswith(run_id)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        names = ", ".join(r.run_id for r in matches[:5])
        raise CommandError(
            f"{run_id!r} starts {len(matches)} run ids in {path}: {names}; give more of the id"
        )
    raise CommandError(
        f"no run {run_id!r} in {path} ({len(runs)} run(s) there). "
        f"`grokwatch runs --db {path}` lists them; a run kept elsewhere needs --db PATH."
    )


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _demo(args: argparse.Namespace) -> int:
    from grokwatch.demo import print_outcome, run_demo

    policy = None
    if args.control:
        from grokwatch.policy import RunPolicy

        policy = RunPolicy()
    events = run_demo(
        args.out,
        steps=args.steps,
        metrics_port=args.metrics_port,
        db=args.db,
        threads=args.threads,
        quiet=args.quiet,
        policy=policy,
    )
    print_outcome(events, Path(args.out))
    return 0


def _timeline(store: SQLiteStore, run: RunRecord, forecaster: str | None) -> Timeline | None:
    from grokwatch.timeline import replay_stored

    points = store.points(run.run_id)
    if not points:
        return None
    return replay_stored(run.meta, points, forecaster=forecaster)


def _runs(args: argparse.Namespace) -> int:
    from grokwatch.timeline import fmt_forecast, fmt_step

    store, path = _open_store(args)
    try:
        runs = sorted(store.list_runs(), key=lambda r: r.created_at, reverse=True)
        shown = runs[: args.limit] if args.limit else runs
        more = f" (the {len(shown)} newest shown; --limit 0 for all)"
        print(f"{len(runs)} run(s) in {path}, newest first" + (more if shown != runs else ""))
        if not runs:
            print(f"(a run appears here once an Agent with db={str(path)!r} has trained)")
            return 0
        forecaster = None if args.no_forecast else "default"
        print(
            f"{'run_id':<28} {'started (UTC)':<19} {'points':>6} {'step':>7} {'phase':<11} "
            f"{'outcome':<13} {'latest forecast':<32} finished run control"
        )
        for r in shown:
            timeline = _timeline(store, r, forecaster)
            last = timeline.entries[-1] if timeline else {}
            summary: Mapping[str, Any] = timeline.summary if timeline else r.summary
            outcome = r.summary.get("outcome") if r.finished_at else "-"
            print(
                f"{r.run_id:<28} {_when(r.created_at):<19} {r.n_points:>6} "
                f"{fmt_step(summary.get('last_step')):>7} {summary.get('phase') or '-':<11} "
                f"{outcome or '-':<13} {fmt_forecast(last):<32} "
                f"{'yes' if r.finished_at else 'no':<8} {_actions_text(r.summary.get('control'))}"
            )
    finally:
        store.close()
    return 0


def _actions_text(control: Any) -> str:
    """The run policy's stops and extensions, e.g. ``extend +2000 @9950, stop finished
    @12400`` (``-`` for a run without a policy or without advice)."""
    if not isinstance(control, dict) or not control.get("actions"):
        return "-"
    parts = []
    for a in control["actions"]:
        if not isinstance(a, dict):
            continue
        if a.get("action") == "extend":
            parts.append(f"extend +{a.get('extend_steps')} @{a.get('step')}")
        else:
            parts.append(f"{a.get('action')} {a.get('reason')} @{a.get('step')}")
    return ", ".join(parts) or "-"


def _show(args: argparse.Namespace) -> int:
    from grokwatch.timeline import write_json

    store, path = _open_store(args)
    try:
        run = _find_run(store, path, args.run_id)
        timeline = _timeline(store, run, None if args.no_forecast else "default")
    finally:
        store.close()
    if timeline is None:
        raise CommandError(f"run {run.run_id!r} in {path} has no evaluation points yet")
    if args.json:
        write_json(args.json, {"run_id": run.run_id, **timeline.to_json()})
    print_show(run, path, timeline, every=args.all)
    if args.json:
        print(f"wrote {args.json}")
    return 0


def print_show(run: RunRecord, path: Path, timeline: Timeline, *, every: bool) -> None:
    """The terminal view of one run: events, change points, the forecast timeline."""
    from grokwatch.timeline import describe

    meta = run.meta
    print(f"run {run.run_id} in {path}")
    print(
        f"  started {_when(run.created_at)} UTC, "
        f"{'finished ' + _when(run.finished_at) + ' UTC' if run.finished_at else 'not finished'}"
        f", {run.n_points} evaluations, budget {meta.get('budget') or '-'}, "
        f"model {meta.get('model') or '-'}"
    )
    print("\n".join(describe(timeline, every=every)))


def _report(args: argparse.Namespace) -> int:
    from grokwatch.report import write_report
    from grokwatch.rundata import load_run

    store, path = _open_store(args)
    try:
        run = _find_run(store, path, args.run_id)
        data = load_run(store, run.run_id)
        timeline = None if args.no_forecast else _timeline(store, run, "default")
    finally:
        store.close()
    print(f"wrote {write_report(data, args.out, timeline=timeline)}")
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


def _measures(text: str) -> list[str] | None:
    """``--measures``: names, comma-separated; ``all``: every measure of a run (``None``)."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"name at least one measure, or 'all' (got {text!r})")
    return None if names == ["all"] else names


def _cap(text: str) -> int | None:
    """``--cap``: runs per family at most; 0: all (``None``)."""
    try:
        cap = int(text)
    except ValueError:
        cap = -1
    if cap < 0:
        raise argparse.ArgumentTypeError(f"runs per family: an integer >= 0 (got {text!r})")
    return cap or None


RECIPE_OPTIONS = (
    "split",
    "folds",
    "far",
    "C_grid",
    "classifier",
    "cadences",
    "fold_by",
    "calibrate",
    "measures",
    "n_trees",
    "learning_rate",
    "budget_samples",
    "cap",
    "seed",
)
"""Options of ``fit`` and ``evaluate --lofo`` whose default is the shipped model's recipe
(``grokwatch.forecast.training.RECIPE``). The parser leaves out the ones not given
(``argparse.SUPPRESS``), so the function called fills them from the recipe: its values are
written in one place, and ``--help`` stays free of the forecaster's imports."""
BY_RECIPE = "default: the recipe"


def _recipe_options(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe options given on the command line, as keyword arguments."""
    return {k: v for k, v in vars(args).items() if k in RECIPE_OPTIONS}


def _fit(args: argparse.Namespace) -> int:
    from grokwatch.forecast.commands import fit_model

    fit_model(args.corpus, args.out, **_recipe_options(args))
    return 0


def _add_recipe_options(group: argparse._ActionsContainer) -> None:
    """The options of ``fit`` and ``evaluate --lofo`` whose defaults are the recipe's."""
    quiet = argparse.SUPPRESS
    group.add_argument(
        "--fold-by",
        choices=["config", "family"],
        default=quiet,
        help=f"inner CV groups: one fold a family, or folds of configurations ({BY_RECIPE})",
    )
    group.add_argument(
        "--calibrate",
        choices=["isotonic", "none"],
        default=quiet,
        help=f"isotonic map of P fitted on the out-of-fold forecasts ({BY_RECIPE})",
    )
    group.add_argument(
        "--folds", type=int, default=quiet, help=f"CV folds by configuration ({BY_RECIPE})"
    )
    group.add_argument(
        "--C",
        dest="C_grid",
        metavar="C",
        type=_floats,
        default=quiet,
        help=f"inverse penalties ({BY_RECIPE})",
    )
    group.add_argument(
        "--trees",
        dest="n_trees",
        metavar="N",
        type=int,
        default=quiet,
        help=f"boosted trees ({BY_RECIPE})",
    )
    group.add_argument(
        "--learning-rate", type=float, default=quiet, help=f"boosting step ({BY_RECIPE})"
    )
    group.add_argument(
        "--cadences", type=_ints, default=quiet, help=f"extra cadences to fit on ({BY_RECIPE})"
    )
    group.add_argument(
        "--budget-samples", type=int, default=quiet, help=f"budget augmentation ({BY_RECIPE})"
    )
    group.add_argument(
        "--cap",
        type=_cap,
        default=quiet,
        help=f"runs per family at most, a seeded sample; 0: all ({BY_RECIPE})",
    )
    group.add_argument(
        "--measures",
        type=_measures,
        default=quiet,
        help=f"fit (and judge) on these measures only, comma-sep.; 'all': every one ({BY_RECIPE})",
    )


def _evaluate(args: argparse.Namespace) -> int:
    from grokwatch.detector import resolve_forecaster
    from grokwatch.forecast.commands import evaluate_corpus, evaluate_lofo
    from grokwatch.forecast.forecaster import GrokForecaster

    name = args.model or ("none" if args.lofo else "default")
    model = None if args.lofo and name == "none" else resolve_forecaster(name)
    if model is not None and not isinstance(model, GrokForecaster):
        raise ValueError(f"--model must name a GrokForecaster file, got {name!r}")
    if args.lofo:
        from grokwatch.forecast.training import RECIPE

        options = _recipe_options(args)
        trees: dict[str, Any] = {
            k: options.pop(k) for k in ("n_trees", "learning_rate") if k in options
        }
        evaluate_lofo(
            [c for c in args.corpus.split(",") if c],
            out=args.out,
            cadence=args.cadence,
            params={**RECIPE.params, **trees},
            shipped=model,
            plots=not args.no_plots,
            name="lofo" if args.cadence is None else f"lofo_cadence{args.cadence}",
            **options,
        )
        return 0
    if model is None:
        raise ValueError("--model none is for --lofo only: evaluate needs a model")
    evaluate_corpus(
        args.corpus,
        model=model,
        out=args.out,
        splits=[s for s in args.eval_split.split(",") if s],
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
    demo.add_argument(
        "--control",
        action="store_true",
        help="opt in to run control (RunPolicy()): stop once generalized, or when hopeless",
    )
    demo.set_defaults(func=_demo)

    runs = sub.add_parser(
        "runs", help="list the runs in a run database, newest first, with their latest forecast"
    )
    runs.add_argument("--db", default=None, help=DB_HELP)
    runs.add_argument("--limit", type=int, default=20, help="newest runs shown (0: all)")
    runs.add_argument(
        "--no-forecast", action="store_true", help="rule-based phases only (no forecaster)"
    )
    runs.set_defaults(func=_runs)

    show = sub.add_parser(
        "show", help="print a stored run's events, change points and forecast timeline"
    )
    show.add_argument("run_id", help="run id (or a unique prefix of one)")
    show.add_argument("--db", default=None, help=DB_HELP)
    show.add_argument("--all", action="store_true", help="every evaluation, not only changes")
    show.add_argument("--json", default=None, help="also write the timeline to this JSON file")
    show.add_argument(
        "--no-forecast", action="store_true", help="rule-based phases only (no forecaster)"
    )
    show.set_defaults(func=_show)

    report = sub.add_parser("report", help="draw the report of a stored run (PNG)")
    report.add_argument("run_id", help="run id (or a unique prefix of one)")
    report.add_argument("--db", default=None, help=DB_HELP)
    report.add_argument("--out", default="report.png", help="PNG path (default report.png)")
    report.add_argument("--no-forecast", action="store_true", help="leave out the forecast panel")
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
        "fit",
        help="fit the grokking forecaster on a corpus; by default the shipped model's recipe",
        description="Fit the grokking forecaster (grouped CV, validation thresholds). Every "
        "option left out takes the shipped model's recipe (grokwatch.forecast.training.RECIPE), "
        "so `grokwatch fit --corpus trainer/data/corpus_v1,trainer/data/corpus --out M.npz` "
        "fits the shipped model again; the options are for ablations.",
    )
    fit.add_argument(
        "--corpus", required=True, help="corpus directories, comma-sep. (trainer/data/corpus)"
    )
    fit.add_argument("--out", required=True, help="model file to write (.npz)")
    fit.add_argument(
        "--split",
        default=argparse.SUPPRESS,
        help=f"corpus splits to fit on, comma-sep. ({BY_RECIPE})",
    )
    fit.add_argument(
        "--far",
        type=float,
        default=argparse.SUPPRESS,
        help=f"validation false-alarm budget ({BY_RECIPE})",
    )
    fit.add_argument(
        "--classifier",
        choices=["trees", "gam"],
        default=argparse.SUPPRESS,
        help=f"P(grok) model ({BY_RECIPE})",
    )
    fit.add_argument(
        "--seed", type=int, default=argparse.SUPPRESS, help=f"sample and fold seed ({BY_RECIPE})"
    )
    _add_recipe_options(fit)
    fit.set_defaults(func=_fit)

    ev = sub.add_parser(
        "evaluate",
        help="evaluate the forecaster and the published baselines on runs it was not fitted on",
        description="Evaluate a model on corpus runs it was not fitted on (runs it was fitted "
        "on are refused: the numbers would be in-sample), or, with --lofo, fit with the shipped "
        "model's recipe on all families but one and judge the family held out, for each.",
    )
    ev.add_argument("--corpus", required=True, help="corpus directory")
    ev.add_argument(
        "--model",
        default=None,
        help="model file, or 'default': the shipped one (the default without --lofo); with "
        "--lofo also scored on the families it never saw ('none', the default: no model)",
    )
    ev.add_argument("--out", default=None, help="directory for evaluation.json and figures")
    ev.add_argument(
        "--split",
        dest="eval_split",
        metavar="SPLITS",
        default="eval,heldout",
        help="splits to evaluate, comma-sep.; none of their runs may be in the model's fit",
    )
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
    _add_recipe_options(lofo)
    ev.set_defaults(func=_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from grokwatch.exceptions import GrokwatchError

    try:
        return int(args.func(args))
    except (CommandError, GrokwatchError, ValueError, OSError) as exc:
        print(f"grokwatch {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
