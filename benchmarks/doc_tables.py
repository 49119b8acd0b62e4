"""The documentation's benchmark tables, rendered from the committed JSON in ``benchmarks/results``.

Every table on the docs site's benchmark pages is written by this module, never by hand: a page
holds a marker ``<!-- table: NAME -->`` and the MkDocs hook (``docs/hooks.py``) replaces it with
``render(NAME)`` at build time. The same tables print in a terminal:

    python benchmarks/doc_tables.py            # every table
    python benchmarks/doc_tables.py overhead   # one of them
    python benchmarks/doc_tables.py --list     # their names
    python benchmarks/doc_tables.py --lofo-md benchmarks/results/forecast/lofo.json  # its .md

A table whose JSON is missing renders as a one-line note naming the file, so a benchmark that is
removed or not yet run never breaks the build.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _sibling(name: str) -> ModuleType:
    """Another script of ``benchmarks/`` (not a package), imported by path."""
    path = ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"benchmarks/{name}.py not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table: the header, its rule, one line a row."""
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _json(relative: str) -> Any:
    return json.loads((RESULTS / relative).read_text())


def _us(x: float) -> str:
    return f"{x / 1000:.2f} ms" if x >= 100 else f"{x:.1f} µs"


def overhead() -> str:
    """Each probe's cost per evaluation in training steps (``benchmarks/overhead.py``)."""
    data = _json("overhead.json")
    costs: dict[str, float] = data["probe_cost_in_train_steps"]
    ranked = sorted(costs.items(), key=lambda kv: -kv[1])
    rows = [(f"`{name}`", f"{cost:.2f}") for name, cost in ranked]
    rows.append((f"**all {len(costs)}**", f"**{sum(costs.values()):.1f}**"))
    repeats = data["repeats"]
    repeats = repeats["mlp"] if isinstance(repeats, dict) else repeats
    note = (
        f"\n\nOne training step of the reference run = {data['train_step_ms']:.1f} ms "
        f"({data['steps']} steps, {repeats} interleaved repeats)."
    )
    return table(("probe", "cost / evaluation (training steps)"), rows) + note


def overhead_cadences() -> str:
    """Probe cost as a share of training time at each measured cadence, and the measured ratios."""
    data = _json("overhead.json")
    total = sum(data["probe_cost_in_train_steps"].values())
    rows = []
    for every, entry in sorted(data["cadences"].items(), key=lambda kv: int(kv[0])):
        lo, hi = entry["ratio_ci95"]
        rows.append((every, f"{total / int(every):.1%}",
                     f"{entry['ratio'] - 1:+.1%} [{lo - 1:+.1%}, {hi - 1:+.1%}]",
                     f"{entry['wall_ratio'] - 1:+.1%}"))  # fmt: skip
    return table(("every", "probe cost / training time", "measured [95 % CI]", "wall clock"), rows)


def fast_paths() -> str:
    """Each online fast path against its slow path (``benchmarks/fast_paths.py``)."""
    data = _json("fast_paths.json")
    rows = [(f"`{t['path']}`", f"{t['fast_us']:.0f} µs", f"{t['slow_us']:.0f} µs",
             f"{t['slow_cores_at_1000_per_s'] - t['fast_cores_at_1000_per_s']:.2f} cores",
             "yes" if t["equal"] else "**no**") for t in data["timings"]]  # fmt: skip
    m = data["memory"]
    rows.append((f"`{m['path']}` ({m['evaluations_per_run']} evaluations per run)",
                 f"{m['fast_mb_per_1000_runs']:.1f} MB / 1000 runs",
                 f"{m['slow_mb_per_1000_runs']:.1f} MB / 1000 runs",
                 f"{m['slow_mb_per_1000_runs'] - m['fast_mb_per_1000_runs']:.1f} MB / 1000 runs",
                 "yes" if m["equal"] else "**no**"))  # fmt: skip
    return table(("path", "fast", "slow", "the slow path would add", "equal"), rows)


def overhead_models() -> str:
    """The agent at its defaults on each model (``benchmarks/overhead.py``)."""
    data = _json("overhead.json")
    if data.get("method") != "interleaved blocks":
        return "*(`benchmarks/overhead.py` results predate the interleaved blocks: rerun it.)*"

    def ci(pair: Sequence[float]) -> str:
        return f"[{pair[0]:+.2%}, {pair[1]:+.2%}]"

    rows = []
    for name, m in data["models"].items():
        rows.append(
            (
                f"`{name}`",
                f"{m['steps']} × {m['train_step_ms']:.1f} ms",
                f"**{m['default_overhead']:+.2%}** {ci(m['overhead_ci95'])}",
                f"{m['wall_overhead']:+.2%} {ci(m['wall_overhead_ci95'])}",
                f"{m['aa_overhead']:+.2%} {ci(m['aa_ci95'])}" if "aa_overhead" in m else "",
                f"{m['spill_over_ms_per_evaluation']:+.2f} ms",
                f"{m['agent_share']:.2%}",
                f"{m['train_step_slowdown']:+.2%}",
                f"{m['faults_per_step_bare']:.2f} / {m['faults_per_step_watched']:.2f}",
                f"{m['evaluations']:.0f}",
            )
        )
    head = (
        "model",
        "steps",
        "overhead [95 % CI]",
        "wall clock [95 % CI]",
        "A/A control",
        "spill-over an evaluation",
        "agent's own share",
        "training steps",
        "page faults a step (bare / watched)",
        "evaluations",
    )

    def cpus(m: dict[str, Any]) -> str:
        return ", ".join(map(str, m.get("cpus", data["cpus"]) or [])) or "any"

    runs = ", ".join(
        f"{k} {m['repeats']} × {m['block_pairs'] // m['repeats']} pairs"
        + (f" + {m['aa_repeats']} A/A" if "aa_repeats" in m else "")
        + f" on CPU {cpus(m)}"
        for k, m in data["models"].items()
    )
    return table(head, rows) + (
        f"\n\nBlocks of {data['block_steps']} steps in ABBA order, pooled over the runs ({runs}); "
        f"1 torch thread; both copies end with "
        f"the same weights: {all(m['weights_equal'] for m in data['models'].values())}."
    )


def overhead_probe_runs() -> str:
    """How often each probe ran on all rows at the defaults (``benchmarks/overhead.py``)."""
    data = _json("overhead.json")
    models = data.get("models", {})
    if not models or "probe_runs" not in next(iter(models.values())):
        return "*(No results yet: rerun `benchmarks/overhead.py`.)*"
    names = list(next(iter(models.values()))["probe_runs"])
    rows = [
        (f"`{probe}`", *(f"{m['probe_runs'].get(probe, 0):.0f}" for m in models.values()))
        for probe in names
    ]
    return table(("probe", *models), rows)


def store_records() -> str:
    """Record size and insert cost by store schema (``benchmarks/store_records.py``)."""
    data = _json("store_records.json")
    return (
        table(
            ("record", "bytes per record", "µs per point", "database (MB)"),
            (
                (r["record"], r["record_bytes"], r["us_per_point"], r["db_mb"])
                for r in data["results"]
            ),
        )
        + f"\n\n{data['points']} points in batches of {data['batch']}, {data['cpus']} CPUs."
    )


def forecast_update_cost() -> str:
    """One detector update's cost by cadence (``benchmarks/forecast_update_cost.py``)."""
    data = _json("forecast/update_cost.json")
    parts = (
        ("detector_with_forecaster", "with the forecaster"),
        ("features_and_change_points", "features and change points"),
        ("model_and_assembly", "trees and assembly"),
        ("detector_without_forecaster", "rule-based only"),
    )
    rows = []
    for cadence, entry in sorted(data["cadences"].items(), key=lambda kv: int(kv[0])):
        for key, label in parts:
            if key in entry:
                m = entry[key]
                rows.append((cadence, label, m["n"], _us(m["mean_us"]), _us(m["median_us"]),
                             _us(m["p99_us"])))  # fmt: skip
    return table(("cadence", "update", "updates", "mean", "median", "p99"), rows) + (
        f"\n\nSource: {data['source']}, {data['repeats']} repeats, {data['machine']}."
    )


def _forecast_group(split: str, group: str, file: str = "forecast/evaluation.json") -> str:
    result = _json(file)
    entry = result[split]["groups"][group]
    counts = ", ".join(f"{v} {k}" for k, v in sorted(entry["outcomes"].items()))
    title = "all evaluation families" if group == "overall" else group
    head = f"**{title}** ({split}; {entry['n_runs']} runs: {counts})\n\n"
    return head + str(_sibling("forecast_tables").table(entry))


def forecast_groups() -> str:
    """The evaluation tables of ``grokwatch evaluate``, one per group (``evaluation.json``)."""
    result = _json("forecast/evaluation.json")
    parts = []
    for split in ("eval", "heldout"):
        for group in result.get(split, {}).get("groups", {}):
            if split == "heldout" and group == "overall":
                continue
            parts.append(_forecast_group(split, group))
    return "\n\n".join(parts)


def forecast_recipe() -> str:
    """The shipped model's recipe (``grokwatch.forecast.training.RECIPE``), each setting with
    its option of ``grokwatch fit`` (read from the parser) and the shipped model's fit report."""
    import dataclasses

    from grokwatch.cli import build_parser
    from grokwatch.forecast.io import load_default
    from grokwatch.forecast.training import RECIPE

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    flags = {a.dest: a.option_strings[0] for a in sub.choices["fit"]._actions if a.option_strings}
    model = load_default()
    report = {**model.fit_report_, **model.get_params()}
    report.setdefault("cap", report.get("cap_per_family"))
    if "C_grid" not in report:  # reports before the grid was recorded: the C chosen
        report["C_grid"] = f"{report['C']} (the C chosen)"

    def show(v: Any) -> str:
        if v is None:
            return "all"
        if isinstance(v, list | tuple):
            return ", ".join(str(x) for x in v)
        return str(v)

    rows = []
    for field in dataclasses.fields(RECIPE):
        shipped = show(report[field.name]) if field.name in report else "not recorded"
        if field.name == "folds" and RECIPE.fold_by == "family":
            shipped += " (one a family)"
        rows.append(
            (field.name, f"`{flags[field.name]}`", show(getattr(RECIPE, field.name)), shipped)
        )
    return table(("setting", "option", "recipe (the default)", "shipped model"), rows)


def forecast_lofo() -> str:
    """Leave one family out (``grokwatch evaluate --lofo``): headline, goals, baselines,
    the default cadence, minimal users, the shipped model (``forecast/lofo.json``)."""
    return lofo_markdown(RESULTS / "forecast" / "lofo.json")


def lofo_markdown(path: Path) -> str:
    """The tables of a ``lofo.json`` at ``path``, as ``grokwatch evaluate --lofo`` writes them
    to the ``lofo.md`` beside it (read from the JSON alone: no fold is fitted or scored)."""
    from grokwatch.forecast.lofo import format_lofo

    return str(format_lofo(json.loads(Path(path).read_text())))


def write_lofo_markdown(path: Path) -> Path:
    """The ``.md`` beside the ``lofo.json`` at ``path`` written again from the JSON (after a
    change to how :func:`~grokwatch.forecast.lofo.format_lofo` renders); returns its path."""
    out = Path(path).with_suffix(".md")
    out.write_text(lofo_markdown(path) + "\n")
    return out


def lofo_paired() -> str:
    """Each ablation against the headline run for run (``benchmarks/lofo_paired.py``: every
    ``forecast/lofo_ablations/*/paired.json``): the difference of each number the goals read
    with its 95 % interval, in bold where the interval leaves out 0."""
    from grokwatch.forecast.lofo import HEADLINE, INTERVAL_KEYS

    names = dict(HEADLINE)  # the labels of lofo.md's tables

    def cell(e: dict[str, Any], k: str) -> str:
        if e["difference"] is None or e["interval"] is None:
            return "—"
        digits = 3 if k == "ece" else 2
        lo, hi = e["interval"]
        text = f"{e['difference']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"
        return f"**{text}**" if e["decided"] else text

    rows = []
    for path in sorted((RESULTS / "forecast" / "lofo_ablations").glob("*/paired.json")):
        data = json.loads(path.read_text())
        entries = [*data["families"].items(), ("**macro**", data["macro"])]
        for fam, entry in entries:
            rows.append((path.parent.name, fam, *(cell(entry[k], k) for k in INTERVAL_KEYS)))
    return table(("ablation", "held-out family", *(names[k] for k in INTERVAL_KEYS)), rows)


def forecast_lofo_ablations() -> str:
    """The method's variants side by side on the leave-one-family-out evaluation: the
    committed ``forecast/lofo.json`` and every ``forecast/lofo_ablations/*/lofo.json``."""
    from grokwatch.forecast.lofo import format_ablations, macro_average

    main = _json("forecast/lofo.json")
    results = {_variant(main["settings"]): main}
    shipped = main.get("shipped") or {}
    if shipped.get("families"):
        fams = shipped["families"]
        name = f"the shipped model (fitted on {', '.join(shipped['fitted_on'])} only)"
        results[name] = {"families": fams, "macro": macro_average(fams)}
    v1_path = RESULTS / "forecast" / "lofo_shipped_v1.json"
    if v1_path.exists():
        fams = json.loads(v1_path.read_text())["families"]
        name = "forecaster v1, shipped before v2 (fitted on corpus v1's MLPs only)"
        results[name] = {"families": fams, "macro": macro_average(fams)}
    for path in sorted((RESULTS / "forecast" / "lofo_ablations").glob("*/lofo.json")):
        data = json.loads(path.read_text())
        results[f"{path.parent.name}: {_variant(data['settings'])}"] = data
    return str(format_ablations(results))


def forecast_mse_live() -> str:
    """Live MSE-trained digits runs at the agent's defaults: the loss found, named, or
    cross-entropy measured (``forecast_mse_live.py``)."""
    data = _json("forecast/mse_live.json")
    summary = data["summary"]
    names = {
        "found": "loss not named (found)",
        "named": "loss named",
        "cross_entropy": "cross-entropy measured (before)",
    }
    forecasters = {"shipped": "shipped", "fold": "fold model without digits"}
    schedules = {"defaults": "defaults (capped)", "grid": "every grid step"}
    n_grok, n_neg = summary["n_grokking"], summary["n_negative"]
    rows = []
    for which, label in forecasters.items():
        for schedule, when in schedules.items():
            for name, title in names.items():
                s = summary[f"{name}/{schedule}/{which}"]
                lead, lead_all = s["median_lead_gap"], s["median_lead_gap_all"]
                rows.append((
                    label, when, title, f"{s['alerted_before']} of {n_grok} ({s['recall']:.2f})",
                    "—" if lead is None else f"{lead:.2f}",
                    "—" if lead_all is None else f"{lead_all:.2f}",
                    f"{s['false_alarms']} of {n_neg}",
                ))  # fmt: skip
    found = ", ".join(f"{k} {v}" for k, v in summary["found/loss_found"].items())
    outcomes = ", ".join(f"{v} {k}" for k, v in summary["outcomes"].items())
    note = (
        f"\n\n{summary['n_runs']} runs ({outcomes}); the loss found without naming it: "
        f"{found}; the losses measured equal the named agent's in "
        f"{summary['same_losses_found_named']} of {summary['n_runs']} runs."
    )
    head = ("forecaster", "schedule", "agent", "alert before t_grok", "median lead (× gap)",
            "median lead, misses as 0", "false alarms")  # fmt: skip
    return table(head, rows) + note


def loss_detection() -> str:
    """The loss the agent finds on the first steps of corpus v2's configurations
    (``loss_detection.py``)."""
    data = _json("forecast/loss_detection.json")
    rows = []
    for key, s in data["summary"].items():
        if key == "all":
            continue
        family, loss = key.split("/")
        found_as = ", ".join(f"{k} {v}" for k, v in sorted(s["found_as"].items()))
        fallback = sum(
            r["source"] != "matched"
            for r in data["runs"]
            if (r["family"], r["trained_with"]) == (family, loss)
        )
        rows.append((family, loss, s["runs"], f"{s['found']} of {s['runs']}", found_as, fallback))
    total = data["summary"]["all"]
    fallback = sum(r["source"] != "matched" for r in data["runs"])
    rows.append(("**all**", "", total["runs"], f"**{total['found']} of {total['runs']}**", "",
                 fallback))  # fmt: skip
    head = ("family", "trained with", "runs", "loss found", "measured",
            "cross-entropy kept (no match)")  # fmt: skip
    return table(head, rows)


def forecast_v1_vs_v2() -> str:
    """Forecaster v1 (shipped before v2, ``forecast_shipped_v1.py``) and v2 (leave one family
    out, ``lofo.json``) on the same runs of the families v1 never saw."""
    v1 = _json("forecast/lofo_shipped_v1.json")
    v2 = _json("forecast/lofo.json")
    keys = (("recall", "recall"), ("far", "FAR"), ("recall_far05", "recall at FAR ≤ 5 %"),
            ("lead_gap", "lead (× gap)"), ("auroc25", "AUROC 25 %"), ("coverage", "coverage"),
            ("ece", "ECE"), ("hopeless_grokking", "grokkers called hopeless"))  # fmt: skip
    rows = []
    for fam, old in v1["families"].items():
        new = v2["families"].get(fam)
        if new is None:
            continue
        cells = []
        for key, _ in keys:
            fmt = "{:.3f}" if key == "ece" else "{:.2f}"
            a, b = (fmt.format(v) if v is not None else "—" for v in (old.get(key), new.get(key)))
            cells.append(f"{a} → {b}")
        rows.append((f"{fam} ({new['n_runs']} runs)", *cells))
    return table(("held-out family: v1 → v2", *(h for _, h in keys)), rows)


def _c(v: Any, fmt: str = "{:.2f}") -> str:
    return "—" if v is None or not math.isfinite(float(v)) else fmt.format(v)


def forecast_transfer(view: str = "native") -> str:
    """Session 2's leave-one-family-out ablations of the transfer rules (the record
    ``forecast/transfer/transfer.json``; its script, ``benchmarks/forecast_transfer.py``, is
    in commit 110b577): recall / FAR at the threshold fixed on the other families, per fit
    variant and rule."""
    data = _json("forecast/transfer/transfer.json")
    variants = data["variants"]
    fams = sorted({f for v in variants.values() for f in v["families"]})
    head = ["fit variant", "alert rule", *fams, "macro recall / FAR", "macro recall at FAR ≤ 5 %",
            "families with recall ≥ 0.9 at FAR ≤ 0.05"]  # fmt: skip
    rows = []
    for name, v in variants.items():
        macro = v["macro"].get(view, {})
        for rule in [k for k in macro if "_k" in k]:
            cells = []
            for f in fams:
                e = v["families"].get(f, {}).get("views", {}).get(view, {}).get(rule)
                cells.append(f"{_c(e['recall'])} / {_c(e['far'])}" if e else "—")
            m = macro[rule]
            threshold, k = rule.split("_k")
            label = f"{'worst-family' if threshold == 'family' else 'pooled'} threshold, k = {k}"
            rows.append((name, label, *cells, f"{_c(m['recall'])} / {_c(m['far'])}",
                         _c(m["recall_far05"]),
                         f"{m['families_meeting_recall_goal']} of {len(fams)}"))  # fmt: skip
    return table(head, rows)


def forecast_transfer_calibration(view: str = "native") -> str:
    """ECE (raw / isotonic / isotonic with families weighing the same) and 80 % interval
    coverage of the same ablations (the record ``forecast/transfer/transfer.json``)."""
    data = _json("forecast/transfer/transfer.json")
    variants = data["variants"]
    fams = sorted({f for v in variants.values() for f in v["families"]})
    head = ["fit variant", "measure", *fams, "macro"]
    rows = []
    for name, v in variants.items():
        macro = v["macro"].get(view, {})

        def entry(f: str, v: Any = v) -> Any:
            return v["families"].get(f, {}).get("views", {}).get(view, {})

        for key, label in (("ece_raw", "ECE raw"), ("ece_isotonic", "ECE isotonic"),
                           ("ece_isotonic_balanced", "ECE isotonic, families equal")):  # fmt: skip
            cells = [_c(entry(f).get(key), "{:.3f}") for f in fams]
            rows.append((name, label, *cells, _c(macro.get(key), "{:.3f}")))
        for key, label in (("interval_pooled", "coverage, residuals pooled"),
                           ("interval_balanced", "coverage, families equal"),
                           ("interval_hazard", "coverage, hazard model"),
                           ("interval", "coverage, the forecaster's (hazard)")):  # fmt: skip
            if key not in macro:
                continue
            cells = [_c((entry(f).get(key) or {}).get("coverage")) for f in fams]
            m = macro.get(key) or {}
            band = f"{m.get('families_in_band', 0)} of {len(fams)} in 0.7–0.9"
            rows.append((name, label, *cells, f"{_c(m.get('coverage'))} ({band})"))
    return table(head, rows)


def seed_claims() -> str:
    """The seed papers' claims on corpus v1 and v2 (``seed_claims.py``)."""
    module = _sibling("seed_claims")
    return str(module.format_claims(_json("forecast/seed_claims.json")))


def _variant(settings: dict[str, Any]) -> str:
    """A committed run's settings in words (its ``monotone`` and ``threshold_rule``: options
    removed after 110b577, which the records of their ablations keep)."""
    params = dict(settings.get("params", {}))
    monotone = params.pop("monotone", None)
    extra = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
    text = f"folds by {settings['fold_by']}, calibration {settings.get('calibrate', 'none')}"
    if settings.get("measures"):
        text += f", measures {' + '.join(settings['measures'])} only"
    rule = (settings.get("transfer") or {}).get("threshold_rule", "pooled")
    if rule != "pooled":
        text += f", {rule} threshold rule"
    if monotone:
        text += f", trees monotone in {', '.join(sorted(monotone))}"
    return f"{text}, {extra}" if extra else text


def _service(name: str) -> str:
    """A table of ``benchmarks/service_tables.py`` over the committed service results."""
    module = _sibling("service_tables")
    directory = RESULTS / "service"
    module.DIRS = [directory]  # the directories it reads; one here, so no "code" column
    return str(getattr(module, name)(directory))


SIDE_BY_SIDE = (
    ("before, run 1", "service_before"),
    ("after, run 1", "service"),
    ("after, run 2", "service_2"),
    ("before, run 2", "service_before_2"),
    ("before, run 3", "service_before_3"),
    ("after, run 3", "service_3"),
    ("before, run 4 (idle)", "service_before_4"),
    ("after, run 4 (idle)", "service_4"),
)
"""The runs of ``benchmarks/service_side_by_side.sh`` (the code before the last round of
changes and after it) in the order they ran, each with its results directory; the second run
took each command on the after checkout first (``ORDER=after-first``)."""


def _side_by_side_dirs() -> list[tuple[str, Path]]:
    return [(label, RESULTS / d) for label, d in SIDE_BY_SIDE if (RESULTS / d).is_dir()]


def service_side_by_side() -> str:
    """Every service table, the code before the last round of changes and after, row by row
    (``benchmarks/service_side_by_side.sh`` ran each command on one and then the other)."""
    module = _sibling("service_tables")
    runs = _side_by_side_dirs()
    module.DIRS = [d for _, d in runs]
    module.LABELS = {d: label for label, d in runs}
    parts = []
    for name in ("throughput", "live", "metrics", "memory"):
        render = getattr(module, name)
        lines = [render(d) for d in module.DIRS]
        parts.append("\n".join(line for line in lines if line))
    return "\n\n".join(parts)


def service_runtable() -> str:
    """CPU per point of the service's ingest path in-process, before and after the last round
    (``benchmarks/service_runtable.py``, run by ``benchmarks/service_side_by_side.sh``)."""
    rows = []
    for order, (label, directory) in enumerate(_side_by_side_dirs()):
        path = directory / "runtable.json"
        if not path.exists():
            continue
        for e in json.loads(path.read_text())["throughput"]:
            rate = f"{e['points_per_s']:,}".replace(",", " ")
            rows.append((order, label, e["forecaster"], e["points_per_request"],
                         f"{e['cpu_us_per_point']:.1f} µs", rate))  # fmt: skip
    rows.sort(key=lambda r: (r[2] != "none", r[3], r[0]))
    return table(("code", "forecaster", "points / request", "CPU per point", "points/s (one core)"),
                 [r[1:] for r in rows])  # fmt: skip


def _replicas(entry: dict[str, Any]) -> str:
    n = entry.get("replicas", 1)
    return "one process" if n == 1 else f"{n} replicas"


def _entries(directory: Path, pattern: str) -> list[dict[str, Any]]:
    paths = sorted(directory.glob(pattern))
    return [dict(e, file=p.stem) for p in paths for e in json.loads(p.read_text())]


def _target_figures(directory: Path, forecaster: str) -> dict[str, tuple[float, str]]:
    """Each target's figure in one run of one checkout, with what was measured: the best
    throughput and live p99, the slowest ``/metrics`` and the most memory."""
    ingest = [e for e in _entries(directory, "ingest_*.json") if e["forecaster"] == forecaster]
    out: dict[str, tuple[float, str]] = {}
    tp = [e for e in ingest if e["scenario"] == "throughput"]
    if tp:
        best = max(tp, key=lambda e: e["points_per_s"])
        out["throughput"] = (best["points_per_s"],
                             f"{_replicas(best)}, {best['batch']} points per request")  # fmt: skip
    live = [e for e in ingest if e["scenario"] == "live" and e["runs"] >= 1000]
    if live:
        best = min(live, key=lambda e: e["p99_ms"])
        out["live"] = (best["p99_ms"],
                       f"{_replicas(best)}, {best['report_points']} points per report")  # fmt: skip
    met = [e for e in _entries(directory, f"metrics_{forecaster}.json") if e["series"] >= 10_000]
    if met:
        worst = max(max(e.get("render_ms_median", 0), e.get("get_ms_median", 0)) for e in met)
        out["metrics"] = (worst, "slowest of in-process and HTTP, median")
    mem = [e for e in _entries(directory, "memory_*.json") if e["forecaster"] == forecaster]
    if mem:
        most = max(mem, key=lambda e: e["mb_per_1000_runs"])
        out["memory"] = (most["mb_per_1000_runs"], f"{most['points_per_run']} evaluations per run")
    return out


TARGETS = {
    "throughput": ("≥ 100k points/s", lambda x: x >= 100_000, lambda x: f"{x / 1000:.0f}k"),
    "live": ("p99 ≤ 20 ms, 1000 runs × 1/s", lambda x: x <= 20, lambda x: f"{x:.3g} ms"),
    "metrics": ("`/metrics` ≤ 100 ms at 10k series", lambda x: x <= 100, lambda x: f"{x:.3g} ms"),
    "memory": ("≤ 50 MB per 1000 live runs", lambda x: x <= 50, lambda x: f"{x:.3g} MB"),
}
"""Each service target: its wording, whether a figure meets it, how a figure prints."""


def service_targets() -> str:
    """The service's targets, each run of each checkout side by side (computed, not typed;
    ✗ marks a figure that misses its target): met when every run of the after checkout
    meets it; when a run was made on an idle machine, judged on that run alone (the others
    shared the machine, and a speed target is a claim about the machine's capacity)."""
    runs = _side_by_side_dirs()
    rows = []
    for forecaster in ("none", "default"):
        figures = [(label, _target_figures(d, forecaster)) for label, d in runs]
        for key, (wording, ok, show) in TARGETS.items():
            measured = [(label, f[key]) for label, f in figures if key in f]
            if not measured:
                continue
            after = [ok(x) for label, (x, _) in measured if label.startswith("after")]
            idle = [ok(x) for label, (x, _) in measured
                    if label.startswith("after") and "idle" in label]  # fmt: skip
            if idle:  # a run on an idle machine is the one that can show a speed target
                verdict = "**met** (idle run)" if all(idle) else "**not met** (idle run)"
            else:
                verdict = ("**met**" if after and all(after) else
                           f"**not met** ({sum(after)} of {len(after)} runs)" if any(after) else
                           "**not met**")  # fmt: skip
            cells = {label.split(",")[0]: [] for label, _ in measured}
            for label, (x, _) in measured:
                cells[label.split(",")[0]].append(show(x) + ("" if ok(x) else " ✗"))
            how = measured[0][1][1]
            rows.append((forecaster, wording, how, " / ".join(cells.get("before", [])),
                         " / ".join(cells.get("after", [])), verdict))  # fmt: skip
    numbers = " / ".join(str(i + 1) for i in range(len(runs) // 2))
    return table(("forecaster", "target", "measured", f"before (runs {numbers})",
                  f"after (runs {numbers})", "after: verdict"), rows)  # fmt: skip


def cli_timing() -> str:
    """``grokwatch --help`` and every subcommand's ``--help`` beside ``python -c pass``."""
    data = _json("cli_help.json")
    base = data["baseline"]
    rows = [(f"`{r['command']}`", f"{r['median_s']:.3f} s", f"{r['max_s']:.3f} s",
             f"{r['median_s'] - base['median_s']:+.3f} s") for r in data["commands"]]  # fmt: skip
    rows.insert(0, (f"`{base['command']}` (baseline)", f"{base['median_s']:.3f} s",
                    f"{base['max_s']:.3f} s", "—"))  # fmt: skip
    return table(("command", "median", "slowest", "over the baseline"), rows) + (
        f"\n\n{data['repeats']} runs of each, interleaved, on {data['machine']}; "
        f"target {data['target_s']} s; load average "
        f"{data.get('load_average_before', float('nan')):.1f} before (the 2-core machine was "
        "shared with other jobs)."
    )


def install_size() -> str:
    """Disk taken by each install (``benchmarks/install_size.py``)."""
    data = _json("install_size.json")
    rows = [
        (f"`{r['install']}`" if r["install"] != "core" else "`pip install -e .` (core)",
         r["packages"], f"{r['mb']:.0f} MB",
         ", ".join(r["missing"]) + " not installed here" if r["missing"] else "")
        for r in data["rows"]
    ]  # fmt: skip
    return table(("install (core + the extra)", "packages", "on disk", "note"), rows)


def corpus_outcomes() -> str:
    """Corpus v2: runs per family and outcome (``python -m trainer.summary ... --json``)."""
    data = json.loads((ROOT / "trainer" / "data" / "corpus_summary.json").read_text())
    outcomes = ("grokking", "comprehension", "memorization", "confusion")
    rows = []
    for family, counts in data["families"].items():
        ok = sum(counts[o] for o in outcomes)
        cells = [f"{counts[o]} ({100 * counts[o] / ok:.0f} %)" if ok else "0" for o in outcomes]
        rows.append((f"`{family}`", ok + counts["failed"], *cells, counts["failed"]))
    total = sum(r[1] for r in rows)
    return table(("family", "runs", *outcomes, "failed"), rows) + f"\n\n{total} runs in all."


def corpus_throughput(path: str = "corpus/throughput.json") -> str:
    """Corpus v2 sweep throughput, naive vs ours (``benchmarks/corpus_throughput.py``)."""
    data = _json(path)
    head = ("side", "processes × threads", "runs per task", "model-steps/s", "× naive",
            "training GFLOP/s", "of matmul peak", "busy")  # fmt: skip
    rows = [(r["side"], f"{r['processes']} × {r['threads']}", max(r["stack"], 1),
             f"{r['model_steps_per_s']:.0f}", f"{r['speedup']:.2f}×", f"{r['train_gflops']:.1f}",
             f"{100 * r['peak_fraction']:.0f} %",
             f"{100 * r['busy_fraction']:.0f} %" if "busy_fraction" in r else "—")
            for r in data["sides"]]  # fmt: skip
    pool = next(r for r in data["sides"] if r["stack"] == 1)
    stacked = [r for r in data["sides"] if r["stack"] > 1]
    gains = [f"stacking alone ({stacked[0]['side']} ÷ {pool['side']}): "
             f"{stacked[0]['model_steps_per_s'] / pool['model_steps_per_s']:.2f}×"]  # fmt: skip
    for before, after in itertools.pairwise(stacked):
        ratio = after["model_steps_per_s"] / before["model_steps_per_s"]
        gains.append(f"{after['side']} ÷ {before['side']}: {ratio:.2f}×")
    note = (
        f"Same run, side by side: {'; '.join(gains)}. "
        f"{data['runs']} runs ({', '.join(data['families'])}; "
        f"{data.get('stacks_per_family', 1)} stack(s) of {data['stack']} per family), "
        f"{data['steps_per_run']} steps each; matmul peak "
        f"{data['matmul_peak_gflops_per_thread']:.0f} GFLOP/s per thread; load average "
        f"{data['load_average_before']:.1f} before, {data['load_average_after']:.1f} after. "
        "Busy: the runs' own seconds over processes × wall."
    )
    if "by_family" not in data["sides"][-1]:
        return table(head, rows) + "\n\n" + note
    # per family: milliseconds of one process per model-step, and the agent's share of it
    cells = []
    for family in data["families"]:
        row: list[str] = [f"`{family}`"]
        for side in data["sides"]:
            f = side["by_family"][family]
            row.append(f"{1e3 * f['run_s'] / f['model_steps']:.2f} ms "
                       f"({100 * f['probe_s'] / f['run_s']:.0f} %)")  # fmt: skip
        cells.append(tuple(row))
    per_family = table(("family", *(s["side"] for s in data["sides"])), cells)
    caption = (
        "Where the time goes: seconds of each run (naive: its whole run, on the side's "
        "threads; the pool: its whole run on one thread; "
        "stacked: its share of its stack's steps plus its own agent) per model-step, and in "
        "brackets the share of it spent in the run's agent (the probes):"
    )
    return "\n\n".join((table(head, rows), note, caption, per_family))


def corpus_probe_tolerance() -> str:
    """Committed v2 runs trained again with batched probes (``corpus_probe_tolerance.py``)."""
    data = _json("corpus/probe_tolerance.json")
    head = ("family", "runs", "model-steps", "training columns", "labels, statuses",
            "batched-probe values equal", "largest relative difference")  # fmt: skip
    rows = []
    for r in data["stacks"]:
        rows.append((f"`{r['family']}`", r["runs"], r["model_steps"],
                     "identical" if r["training_columns_identical"] else "DIFFER",
                     "identical" if r["labels_identical"] and r["statuses_identical"]
                     else "DIFFER",
                     f"{r['batched_values'] - r['batched_values_differing']} of "
                     f"{r['batched_values']}",
                     f"{max(r['batched_relative'].values()):.1e}"))  # fmt: skip
    return table(head, rows)


def corpus_reproduce(name: str = "reproduce") -> str:
    """Committed v2 runs against the regenerate command's plan (``corpus_reproduce.py``)."""
    data = _json(f"corpus/{name}.json")
    steps = "whole run" if data.get("whole_runs") else f"first {data['steps']} steps"
    head = ("family", "runs", f"{steps} bitwise the committed run",
            "of them without the two bookkeeping columns", "differ", "first different at step",
            "worker-hours of the differing runs")  # fmt: skip
    rows = []
    for family, f in data["families"].items():
        at = ", ".join(f"{s}: {n}" for s, n in f["first_difference_steps"].items())
        rows.append((f"`{family}`", f["runs"], f["identical"], f["identical_but_older_columns"],
                     f["differing"], at or "–", f"{f['differing_worker_hours']:.3f}"))  # fmt: skip
    keys = ("runs", "identical", "identical_but_older_columns", "differing",
            "differing_worker_hours")  # fmt: skip
    total = {k: sum(f[k] for f in data["families"].values()) for k in keys}
    rows.append(("all", total["runs"], total["identical"], total["identical_but_older_columns"],
                 total["differing"], "", f"{total['differing_worker_hours']:.3f}"))  # fmt: skip
    return table(head, rows)


def corpus_slow_grokkers() -> str:
    """The slow-grokker check of corpus v2, by family (``python -m trainer.sweep --out
    trainer/data/corpus --check-memorization 12 --factor 3``: its ``report.json``)."""
    path = ROOT / "trainer/data/corpus/checks/memorization/report.json"
    data = json.loads(path.read_text())
    factor = data["factor"]
    rows = []
    for family in sorted({r["run_id"].split("-")[0] for r in data["runs"]}):
        mine = [r for r in data["runs"] if r["run_id"].split("-")[0] == family]
        later = sorted(r["t_grok"] / r["budget"] for r in mine if r["t_grok"] is not None)
        budgets = ", ".join(f"{r['budget']:,}".replace(",", " ") for r in mine)
        rows.append((f"`{family}`", len(mine), len(later), ", ".join(f"{x:.2f}" for x in later),
                     budgets))  # fmt: skip
    head = ("family", "checked", f"generalized within {factor} B", "at (× B)", "budgets B")
    return table(head, rows)


def lofo_near_miss() -> str:
    """Held-out negatives by how close they came to 90 % (``benchmarks/lofo_near_miss.py``)."""
    data = _json("forecast/lofo_near_miss.json")
    near = data["near"]

    def q(v: list[float] | None) -> str:
        return "–" if v is None else f"{v[1]:.2f} [{v[0]:.2f}, {v[2]:.2f}]"

    head = ("held-out family", "negatives", "false alarms", f"near misses (test ≥ {near:.2f})",
            "false alarms that are near misses", "best test accuracy: alarmed",
            "best test accuracy: quiet")  # fmt: skip
    rows = [(f"`{f}`", r["n_negative"], r["false_alarms"], r["near_misses"],
             r["false_alarms_near"], q(r["alarmed_best_test_accuracy"]),
             q(r["quiet_best_test_accuracy"])) for f, r in data["families"].items()]  # fmt: skip
    return table(head, rows)


def lofo_interval() -> str:
    """Where along the plateau the 80 % interval holds on the held-out families
    (``benchmarks/lofo_interval.py`` on the committed run), then the same coverage for every
    interval ablation with a ``lofo_interval.json`` of its own."""
    data = _json("forecast/lofo_interval.json")
    thirds = next(iter(data["families"].values()))["thirds"]

    def third(t: dict[str, Any]) -> str:
        return f"{t['covered']:.2f} ({t['early']:.2f} / {t['late']:.2f})"

    head = ("held-out family", "grokking runs", "at mid-plateau", "every evaluation",
            *(f"{name}: covered (early / late)" for name in thirds))  # fmt: skip
    rows = [(f"`{f}`", r["n_grokking"], f"{r['mid_plateau']:.2f}", f"{r['every_evaluation']:.2f}",
             *(third(r["thirds"][name]) for name in thirds))
            for f, r in data["families"].items()]  # fmt: skip
    variants = {"the time model's central 80 % (as fitted)": data}
    for path in sorted((RESULTS / "forecast" / "lofo_ablations").glob("*/lofo_interval.json")):
        variants[path.parent.name] = json.loads(path.read_text())
    fams = list(data["families"])

    def both(r: dict[str, Any]) -> str:
        return f"{r['mid_plateau']:.2f} / {r['every_evaluation']:.2f}"

    cells = [(name, *(both(v["families"][f]) for f in fams)) for name, v in variants.items()]
    return "\n\n".join(
        (
            table(head, rows),
            table(("interval (mid-plateau / every evaluation)", *(f"`{f}`" for f in fams)), cells),
        )
    )


def lofo_hopeless() -> str:
    """The hopeless rules before and after session 7 side by side on the same 300 runs per
    family (``lofo_ablations/cap300`` and ``cap300_hopeless_strict``), each cell: grokking
    runs called hopeless before ``t_grok`` · the share of never-grokking runs called hopeless
    within their budget · their first call over the budget (median)."""
    rules = {
        "before: 5 % of a fitting family's grokkers may be called": "cap300",
        "now: none may, and never while generalizing": "cap300_hopeless_strict",
    }
    data = {k: _json(f"forecast/lofo_ablations/{d}/lofo.json") for k, d in rules.items()}

    def cells(s: dict[str, Any]) -> str:
        return (f"{s['n_hopeless_grokking']} of {s['n_grokking']} · "
                f"{s['hopeless_negative']:.2f} · {s['hopeless_first_budget']:.2f}")  # fmt: skip

    first = next(iter(data.values()))
    views = {"every 50 steps": lambda d: d}
    views.update({v: lambda d, v=v: d["views"][v] for v in first.get("views", {})})
    rows = [
        [f"`{fam}`", view, *(cells(of(d)["families"][fam]) for d in data.values())]
        for fam in first["families"]
        for view, of in views.items()
    ]
    return table(["held-out family", "view", *data], rows)


def corpus_stacked_step() -> str:
    """One stacked MLP training step, vmap vs hand-written bmm (``benchmarks/stacked_step.py``)."""
    data = _json("corpus/stacked_step.json")
    shape = data["shape"]
    head = ("runs × rows", "p, d_emb, d_hidden", "GFLOP per step", "at the matmul peak",
            "vmap (corpus path)", "bmm by hand", "bmm ÷ vmap")  # fmt: skip
    row = (f"{data['runs']} × {data['rows_per_run']}",
           f"{shape['p']}, {shape['d_emb']}, {shape['d_hidden']}", f"{data['step_gflop']:.3f}",
           f"{data['compute_bound_ms']:.1f} ms", f"{data['ms_per_step']['vmap']:.1f} ms",
           f"{data['ms_per_step']['bmm']:.1f} ms", f"{data['bmm_over_vmap']:.2f}")  # fmt: skip
    if "families" not in data:
        return table(head, [row])
    rows = []
    for family, f in data["families"].items():
        before, after = f["ms_per_step"].values()
        rows.append((f"`{family}`", f"{f['runs']} × {f['rows_per_run']}",
                     f"{f['step_gflop']:.3f}", f"{f['compute_bound_ms']:.1f} ms",
                     f"{before:.1f} ms", f"{after:.1f} ms", f"{before / after:.2f}×",
                     "yes" if f["bitwise_equal"] else "no"))  # fmt: skip
    per_family = table(("family", "runs × rows", "GFLOP per step", "at the matmul peak",
                        "whole loss under vmap", "forward under vmap (corpus path)",
                        "gain", "bitwise equal"), rows)  # fmt: skip
    text = (
        table(head, [row])
        + "\n\nOne step on all training rows, the first stack of every family (the model's own "
        "forward on both sides):\n\n" + per_family
    )
    if data.get("stacked_form"):
        head_forms = ("layers", "d_model", "heads", "LayerNorm", "runs × rows", "own forward",
                      "stacked form (corpus path)", "gain", "losses differ (relative)")  # fmt: skip
        forms = [(f"{f['shape']['n_layers']}", f"{f['shape']['d_model']}",
                  f"{f['shape']['n_heads']}", "yes" if f["layernorm"] else "no",
                  f"{f['runs']} × {f['rows_per_run']}",
                  *(f"{v:.1f} ms" for v in f["ms_per_step"].values()), f"{f['gain']:.2f}×",
                  f"{f['loss_max_rel_diff']:.1e}")
                 for f in data["stacked_form"]]  # fmt: skip
        text += (
            "\n\nThe transformer's stacks of the throughput benchmark, one step on all training "
            "rows, the model's own forward against its stacked form (what a stack trains):\n\n"
            + table(head_forms, forms)
        )
    return text


def control_live() -> str:
    """Run control trained live through Optuna and Lightning (``benchmarks/control_live.py``)."""
    data = _json("control/live.json")
    setup = data["setup"]
    rows = []
    for name, m in data["methods"].items():
        library, method = name.split("_", 1)
        late = m["past_budget_grokkers"]
        rescued = f"{m['rescued']}/{late}" if late else "— (none in this set)"
        never = f"{m['steps_on_never_generalizing']:,}".replace(",", " ")
        lost = f"{m['grokkers_lost_count']}/{m['grokkers']}"
        rows.append((library, method.replace("_", " "), f"{m['compute_fraction']:.1%}", lost,
                     rescued, f"{never} ({m['never_generalizing']} runs)",
                     f"{m['seconds']:.0f} s"))  # fmt: skip
    head = ("library", "method", "compute vs fixed", "grokkers lost", "past-budget rescued",
            "steps on never-generalizing runs", "wall time")  # fmt: skip
    runs = []
    names = list(data["methods"])
    for i, (wd, frac) in enumerate(setup["configs"]):
        cells = []
        for name in names:
            r = data["methods"][name]["runs"][i]
            steps = min(r["steps"], setup["budget"]) if name.endswith("_fixed") else r["steps"]
            cells.append(f"{steps}" + (f" (t_grok {r['t_grok']})" if r["t_grok"] else ""))
        runs.append((f"wd {wd}, train {frac:.0%}", *cells))
    note = (
        f"{len(setup['configs'])} configurations, budget {setup['budget']} steps, evaluations "
        f"every {setup['every']}; references trained to {setup['reference_steps']} steps; "
        f"{setup['seconds']:.0f} s wall in all, {setup['processes']} processes at once with "
        f"{setup['torch_threads']} torch thread each, load average "
        f"{setup['load_average_before']:.1f} before and {setup['load_average_after']:.1f} after "
        "(a shared 2-core machine: wall times compare methods only roughly; a fixed method's "
        "time is its reference run's, trained to twice the budget)."
    )
    caption = (
        "Steps charged per run (t_grok: first evaluation at "
        f"{setup['grokked_at_test_accuracy']:.0%} test accuracy, if reached while training; "
        "for a fixed method, in its reference run):"
    )
    per_run = table(("configuration", *(n.replace("_", " ") for n in names)), runs)
    return "\n\n".join((table(head, rows), note, caption, per_run))


TABLES: dict[str, Callable[[], str]] = {
    "corpus_outcomes": corpus_outcomes,
    "forecast_mse_live": forecast_mse_live,
    "loss_detection": loss_detection,
    "corpus_throughput": corpus_throughput,
    "corpus_throughput_600": lambda: corpus_throughput("corpus/throughput_600_steps.json"),
    "corpus_throughput_600_stack7": lambda: corpus_throughput(
        "corpus/throughput_600_steps_stack7.json"
    ),
    "corpus_probe_tolerance": corpus_probe_tolerance,
    "corpus_reproduce": corpus_reproduce,
    "corpus_slow_grokkers": corpus_slow_grokkers,
    "lofo_near_miss": lofo_near_miss,
    "lofo_hopeless": lofo_hopeless,
    "lofo_interval": lofo_interval,
    "corpus_reproduce_whole": lambda: corpus_reproduce("reproduce_whole"),
    "corpus_stacked_step": corpus_stacked_step,
    "control_live": control_live,
    "overhead": overhead,
    "overhead_cadences": overhead_cadences,
    "overhead_models": overhead_models,
    "overhead_probe_runs": overhead_probe_runs,
    "store_records": store_records,
    "forecast_update_cost": forecast_update_cost,
    "forecast_groups": forecast_groups,
    "forecast_recipe": forecast_recipe,
    "forecast_lofo": forecast_lofo,
    "forecast_lofo_ablations": forecast_lofo_ablations,
    "lofo_paired": lofo_paired,
    "forecast_v1_vs_v2": forecast_v1_vs_v2,
    "forecast_transfer": forecast_transfer,
    "forecast_transfer_grid": lambda: forecast_transfer("default_grid"),
    "forecast_transfer_calibration": forecast_transfer_calibration,
    "seed_claims": seed_claims,
    "service_throughput": lambda: _service("throughput"),
    "service_live": lambda: _service("live"),
    "service_metrics": lambda: _service("metrics"),
    "service_memory": lambda: _service("memory"),
    "service_targets": service_targets,
    "service_side_by_side": service_side_by_side,
    "service_runtable": service_runtable,
    "fast_paths": fast_paths,
    "cli_timing": cli_timing,
    "install_size": install_size,
}


def render(name: str) -> str:
    """The markdown of table ``name``; a note instead when its JSON is missing."""
    if name not in TABLES:
        raise KeyError(f"unknown table {name!r}; known: {', '.join(sorted(TABLES))}")
    try:
        return TABLES[name]()
    except FileNotFoundError as exc:
        missing = Path(exc.filename).relative_to(ROOT) if exc.filename else "its JSON"
        return f"*(No results yet: `{missing}` is not in the repository.)*"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="tables to print (default: all)")
    parser.add_argument("--list", action="store_true", help="list the table names")
    parser.add_argument(
        "--lofo-md",
        nargs="+",
        type=Path,
        metavar="LOFO_JSON",
        help="write the .md beside each lofo.json again from the JSON (no LOFO is run)",
    )
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(sorted(TABLES)))
        return
    if args.lofo_md:
        for path in args.lofo_md:
            print(f"wrote {write_lofo_markdown(path)}")
        return
    for name in args.names or list(TABLES):
        print(f"## {name}\n\n{render(name)}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
