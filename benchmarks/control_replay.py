"""Run control on held-out runs, replayed: grokwatch's policy against the usual stopping rules.

Every method sees a run's recorded evaluations (every 50 steps) one after another, as a live
run would report them, and decides when to stop it (or, grokwatch only, to extend it):

- ``fixed``: every run trains its whole budget;
- ``grokwatch_no_finished_stop``: the same policy without the finished stop (an ablation: the
  savings of the hopeless stop alone, and the extensions);
- ``grokwatch``: :class:`grokwatch.RunDetector` with the default :class:`grokwatch.RunPolicy`
  (risk 0.01, patience 3, min_fraction 0.2, finish_patience 1, max_extension 1.0) -- the same
  code path as the agent and the service -- and, for each run, the leave-one-family-out fold
  model fitted without the run's family (``--models``, by default the committed
  ``benchmarks/results/forecast/lofo/models``; the shipped model was fitted on a sample of
  every family, these runs' included), with the hopeless threshold the shipped policy uses at
  the corpus cadence (its calibration's fold models never saw the run's family either);
  ``--models shipped`` replays the shipped model itself;
- ``early_stopping``: Lightning's ``EarlyStopping(monitor="val_loss", patience=10)`` with the
  test loss checked every 100 steps (its own ``_evaluate_stopping_criteria`` is called, so the
  rule is Lightning's to the line);
- ``median_pruner``: a real Optuna study per sweep (family) with
  ``MedianPruner(n_startup_trials=5, n_warmup_steps=0)``; each run is a trial that reports its
  test accuracy at every evaluation and is pruned when ``trial.should_prune()`` says so;
- ``asha``: Ray Tune's asynchronous successive halving, its rung rule run by Ray's own
  ``ray.tune.schedulers.async_hyperband._Bracket`` (grace period 500 steps, reduction factor
  4, max_t the sweep's largest budget, metric test accuracy), fed one trial after another
  (one worker; with parallel workers the order of arrival at a rung differs).

Runs (``trainer/data/corpus_v1``, v1): the ``eval`` families ``transformer`` and ``digits`` and
the ``heldout`` split of ``mlp`` (held out by forecaster v1, which was fitted on the ``mlp``
``train`` split; the fold models never saw any run of their family). A grokking run's record
stops soon after ``t_grok`` (the corpus keeps a tail): a method that has not stopped a run by
the end of its record is charged the rest of its budget (``unobserved_steps`` says how many
such steps each method was charged; ``compute_fraction_unrecorded_free`` charges them
nothing, a lower bound that favours the methods that never stop a finished run).

Past-budget grokkers (``rescued_fraction``): (a) the runs of
``trainer/data/corpus_v1/checks/memorization`` that were continued to 3x their budget and grok
after it (3 runs; the two ``mlp`` ones are configurations of the ``train`` split, the digits
one is held out), replayed with their original budget; (b) every held-out run that groks
after step 1000, replayed with its budget cut to ``t_grok / 1.5`` (a budget a third too
short). A run is rescued when the method gives it steps up to its ``t_grok``. Only grokwatch
extends runs; the other methods rescue none by construction.

    python -m benchmarks.control_replay       # writes benchmarks/results/control/
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from grokwatch import RunDetector, RunPolicy
from grokwatch.forecast.io import load, load_default
from grokwatch.forecast.replay import architecture_family

OUT = Path("benchmarks/results/control")
LOFO_MODELS = Path("benchmarks/results/forecast/lofo/models")
CORPUS = "trainer/data/corpus_v1"
CHECKS = "trainer/data/corpus_v1/checks/memorization"
SHORTEN = 1.5
ES_EVERY, ES_PATIENCE = 100, 10
MEDIAN_STARTUP = 5
ASHA_GRACE, ASHA_RF = 500, 4


@dataclasses.dataclass
class Run:
    run_id: str
    sweep: str
    family: str  # grokwatch.forecast.replay.architecture_family: the fold it is held out in
    budget: int
    t_grok: int | None  # first evaluation with test accuracy >= 0.9 in the record (any step)
    steps: np.ndarray
    points: list[dict[str, float]]
    test_accuracy: np.ndarray
    test_loss: np.ndarray

    @property
    def groks_in_budget(self) -> bool:
        return self.t_grok is not None and self.t_grok <= self.budget

    @property
    def groks_after_budget(self) -> bool:
        return self.t_grok is not None and self.t_grok > self.budget


@dataclasses.dataclass
class Result:
    """What a method did with one run."""

    spent: int  # steps trained (charged)
    reached: int  # the last step the run was trained to (for "stopped before t_grok")
    unobserved: int = 0  # charged steps past the end of the record
    extended: int = 0


def _first_grok(steps: np.ndarray, acc: np.ndarray) -> int | None:
    hit = np.flatnonzero(acc >= 0.9)
    return None if hit.size == 0 else int(steps[hit[0]])


def load_runs(
    directory: str, *, splits: Sequence[str] | None, budget_divisor: int = 1
) -> list[Run]:
    from trainer.corpus import load

    runs = []
    for r in load(directory, split=splits):
        cols = {c: j for j, c in enumerate(r.columns)}
        steps = np.asarray(r.steps, dtype=int)
        acc = np.asarray(r.values[:, cols["test_accuracy"]], dtype=float)
        loss = np.asarray(r.values[:, cols["test_loss"]], dtype=float)
        points = [
            {c: float(v) for c, v in zip(r.columns, row, strict=True) if not math.isnan(v)}
            for row in r.values
        ]
        budget = int(r.labels["budget"]) // budget_divisor
        sweep = r.family if r.split != "heldout" else f"{r.family}-heldout"
        runs.append(
            Run(r.run_id, sweep, architecture_family(r), budget, _first_grok(steps, acc), steps,
                points, acc, loss)
        )  # fmt: skip
    return runs


def _charge(run: Run, until: int) -> Result:
    """A run trained to ``until`` (its budget or an extension) without a stop; the steps of
    its original budget past the end of its record are ``unobserved`` (extension steps past
    the record are compute spent all the same)."""
    last = int(run.steps[-1])
    return Result(spent=until, reached=until, unobserved=max(min(until, run.budget) - last, 0))


def fixed(run: Run) -> Result:
    return _charge(run, run.budget)


def grokwatch_policy(run: Run, policy: RunPolicy, model: Any) -> Result:
    det = RunDetector(budget=run.budget, forecaster=model, policy=policy)
    budget = run.budget
    for step, values in zip(run.steps.tolist(), run.points, strict=True):
        if step > budget:
            break
        decision = det.observe(step, values)
        if decision.should_stop:
            return Result(spent=step, reached=step, extended=budget - run.budget)
        if decision.should_extend:
            budget += decision.extend_steps
    result = _charge(run, budget)
    result.extended = budget - run.budget
    return result


def early_stopping(run: Run) -> Result:
    import torch
    from lightning.pytorch.callbacks import EarlyStopping

    es = EarlyStopping(monitor="val_loss", patience=ES_PATIENCE, mode="min")
    for step, loss in zip(run.steps.tolist(), run.test_loss.tolist(), strict=True):
        if step > run.budget:
            break
        if step == 0 or step % ES_EVERY:
            continue
        stop, _ = es._evaluate_stopping_criteria(torch.tensor(loss))
        if stop:
            return Result(spent=step, reached=step)
    return _charge(run, run.budget)


def median_pruner(runs: Sequence[Run]) -> dict[str, Result]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out: dict[str, Result] = {}
    for sweep in sorted({r.sweep for r in runs}):
        pruner = optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP, n_warmup_steps=0)
        study = optuna.create_study(direction="maximize", pruner=pruner)
        for run in (r for r in runs if r.sweep == sweep):
            trial = study.ask()
            pruned_at = None
            for step, acc in zip(run.steps.tolist(), run.test_accuracy.tolist(), strict=True):
                if step > run.budget:
                    break
                trial.report(acc, step)
                if trial.should_prune():
                    pruned_at = step
                    break
            if pruned_at is not None:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                out[run.run_id] = Result(spent=pruned_at, reached=pruned_at)
            else:
                study.tell(trial, float(run.test_accuracy[run.steps <= run.budget][-1]))
                out[run.run_id] = _charge(run, run.budget)
    return out


def asha(runs: Sequence[Run]) -> dict[str, Result]:
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.schedulers.async_hyperband import _Bracket

    @dataclasses.dataclass(frozen=True)
    class _Trial:
        trial_id: str

    out: dict[str, Result] = {}
    for sweep in sorted({r.sweep for r in runs}):
        members = [r for r in runs if r.sweep == sweep]
        bracket = _Bracket(ASHA_GRACE, max(r.budget for r in members), ASHA_RF, 0)
        for run in members:
            trial, stopped = _Trial(run.run_id), None
            for step, acc in zip(run.steps.tolist(), run.test_accuracy.tolist(), strict=True):
                if step > run.budget:
                    break
                if bracket.on_result(trial, step, acc) == TrialScheduler.STOP:
                    stopped = step
                    break
            out[run.run_id] = (
                Result(spent=stopped, reached=stopped)
                if stopped is not None
                else _charge(run, run.budget)
            )
    return out


def summarize(runs: Sequence[Run], results: dict[str, Result]) -> dict[str, Any]:
    total_fixed = sum(r.budget for r in runs)
    spent = sum(results[r.run_id].spent for r in runs)
    grokkers = [r for r in runs if r.groks_in_budget]
    lost = [r.run_id for r in grokkers if results[r.run_id].reached < (r.t_grok or 0)]
    never = [r for r in runs if r.t_grok is None]
    return {
        "runs": len(runs),
        "total_steps": spent,
        "compute_fraction": spent / total_fixed,
        "compute_saved": 1.0 - spent / total_fixed,
        "grokkers": len(grokkers),
        "grokkers_lost_count": len(lost),
        "grokkers_lost": len(lost) / max(len(grokkers), 1),
        "lost_runs": lost,
        "steps_on_never_generalizing": sum(results[r.run_id].spent for r in never),
        "steps_on_never_generalizing_fixed": sum(r.budget for r in never),
        "never_generalizing": len(never),
        "unobserved_steps": sum(results[r.run_id].unobserved for r in runs),
        "compute_fraction_unrecorded_free": (
            spent - sum(results[r.run_id].unobserved for r in runs)
        )
        / total_fixed,
    }


def rescue(runs: Sequence[Run], results: dict[str, Result]) -> dict[str, Any]:
    late = [r for r in runs if r.groks_after_budget]
    saved = [r.run_id for r in late if results[r.run_id].reached >= (r.t_grok or 0)]
    return {
        "past_budget_grokkers": len(late),
        "rescued": len(saved),
        "rescued_fraction": len(saved) / max(len(late), 1),
        "extension_steps": sum(results[r.run_id].extended for r in runs),
    }


def shortened(runs: Sequence[Run]) -> list[Run]:
    """Held-out grokkers replayed with a budget a third too short (see the docstring)."""
    out = []
    for r in runs:
        if r.t_grok is None or r.t_grok < 1000:
            continue
        budget = round(r.t_grok / SHORTEN / 50.0) * 50
        out.append(dataclasses.replace(r, budget=budget, run_id=f"{r.run_id}-short"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--limit", type=int, default=0, help="first N runs only (a smoke test)")
    ap.add_argument(
        "--models",
        default=str(LOFO_MODELS),
        help="leave-one-family-out fold models, FAMILY.npz each ('shipped': the shipped model)",
    )
    args = ap.parse_args()
    t0 = time.perf_counter()
    shipped = load_default()
    if args.models == "shipped":
        models: dict[str, Any] = {}
        threshold = None  # the policy's own: the shipped model's calibration
        about = "shipped"
    else:
        models = {p.stem: load(p) for p in sorted(Path(args.models).glob("*.npz"))}
        # the shipped policy's threshold at the corpus cadence, for forecasts of models that
        # never saw the run's family (as the calibration's fold models never did)
        threshold = RunPolicy().calibrated_threshold(shipped, 50)
        about = (
            f"leave-one-family-out fold models ({args.models}): each run forecast by the model "
            f"fitted without its family; hopeless threshold {threshold:.4f}, the shipped "
            "policy's at 50 steps"
        )
    policy = RunPolicy(hopeless_threshold=threshold)
    no_finish = RunPolicy(stop_finished=False, hopeless_threshold=threshold)  # the savings' source

    def model(run: Run) -> Any:
        if not models:
            return shipped
        if run.family not in models:
            raise SystemExit(f"no fold model for family {run.family!r} in {args.models}")
        return models[run.family]

    held = load_runs(CORPUS, splits=["eval", "heldout"])
    checks = load_runs(CHECKS, splits=None, budget_divisor=3)
    if args.limit:
        held = held[: args.limit]
    short = shortened(held)
    print(f"{len(held)} held-out runs, {len(checks)} continued runs, {len(short)} shortened")

    per_run: dict[str, dict[str, Result]] = {}
    methods: dict[str, Callable[[Sequence[Run]], dict[str, Result]]] = {
        "fixed": lambda rs: {r.run_id: fixed(r) for r in rs},
        "grokwatch": lambda rs: {r.run_id: grokwatch_policy(r, policy, model(r)) for r in rs},
        "grokwatch_no_finished_stop": lambda rs: {
            r.run_id: grokwatch_policy(r, no_finish, model(r)) for r in rs
        },
        "early_stopping": lambda rs: {r.run_id: early_stopping(r) for r in rs},
        "median_pruner": median_pruner,
        "asha": asha,
    }
    out: dict[str, Any] = {"methods": {}}
    for name, method in methods.items():
        t = time.perf_counter()
        main_results = method(held)
        late_results = {**method(checks), **method(short)}
        per_run[name] = {**main_results, **late_results}
        summary = summarize(held, main_results)
        both = rescue([*checks, *short], late_results)
        summary.update(
            {
                "rescued_fraction": both["rescued_fraction"],
                "rescued": both["rescued"],
                "past_budget_grokkers": both["past_budget_grokkers"],
                "rescue_continued_runs": rescue(checks, late_results),
                "rescue_shortened_budgets": rescue(short, late_results),
                "seconds": round(time.perf_counter() - t, 1),
            }
        )
        by_sweep = {}
        for sweep in sorted({r.sweep for r in held}):
            members = [r for r in held if r.sweep == sweep]
            s = summarize(members, main_results)
            by_sweep[sweep] = {k: s[k] for k in ("runs", "compute_fraction", "grokkers_lost")}
        summary["by_sweep"] = by_sweep
        out["methods"][name] = summary
        print(
            f"{name:>15}: compute {summary['compute_fraction']:.3f}, lost "
            f"{summary['grokkers_lost_count']}/{summary['grokkers']}, rescued "
            f"{summary['rescued']}/{summary['past_budget_grokkers']} "
            f"({summary['seconds']} s)",
            flush=True,
        )
    out["setup"] = {
        "corpus": CORPUS,
        "held_out": "eval split (transformer, digits) + heldout split (mlp)",
        "continued_runs": CHECKS + " (budget = recorded budget / 3; 2 of 3 past-budget "
        "grokkers are mlp train-split configurations)",
        "shortened_budget_factor": SHORTEN,
        "cadence_steps": 50,
        "policy": policy.to_json(),
        "early_stopping": {"monitor": "test loss", "every": ES_EVERY, "patience": ES_PATIENCE},
        "median_pruner": {"n_startup_trials": MEDIAN_STARTUP, "n_warmup_steps": 0},
        "asha": {"grace_period": ASHA_GRACE, "reduction_factor": ASHA_RF},
        "forecaster": about,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "benchmark.json").write_text(json.dumps(out, indent=1) + "\n")
    (folder / "table.md").write_text(table(out) + "\n")
    print(f"wrote {folder}/benchmark.json and table.md in {out['setup']['seconds']} s")


def table(result: dict[str, Any]) -> str:
    """The docs table (docs/control.md includes it), from the JSON.

    ``python -c "from benchmarks.control_replay import rewrite_table; rewrite_table()"``
    rewrites it from the committed JSON alone."""
    rows = [
        "| method | compute vs fixed budget | (unrecorded tails free) | grokkers lost | "
        "past-budget grokkers rescued | steps on never-generalizing runs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, m in result["methods"].items():
        rows.append(
            f"| {name} | {m['compute_fraction']:.1%} | "
            f"{m['compute_fraction_unrecorded_free']:.1%} | {m['grokkers_lost_count']} / "
            f"{m['grokkers']} ({m['grokkers_lost']:.1%}) | {m['rescued']} / "
            f"{m['past_budget_grokkers']} ({m['rescued_fraction']:.0%}) | "
            f"{m['steps_on_never_generalizing']:,} |"
        )
    return "\n".join(rows)


def rewrite_table(folder: Path = OUT) -> None:
    result = json.loads((folder / "benchmark.json").read_text())
    (folder / "table.md").write_text(table(result) + "\n")


if __name__ == "__main__":
    main()
