"""The research check of a corpus: are slow grokkers mislabelled as memorization?

python -m trainer.sweep --out DIR --check-memorization 12 --factor 3
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from trainer import corpus as corpus_io
from trainer.execution import execute, pending_stacks
from trainer.spec import RunTask, SweepSpec
from trainer.stacked import run_stack_probes_per_run


def check_memorization(
    directory: str | Path,
    n: int,
    *,
    factor: int = 3,
    seed: int = 0,
    executor: Any = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Are slow grokkers mislabelled? Continue `n` runs labelled memorization to `factor`×
    their budget and count those that generalize after all.

    The runs are trained again from scratch with the larger budget: training is deterministic
    on a CPU, so the first B steps repeat exactly (checked: the same t_mem), and the runs land
    in `DIR/checks/memorization/` (a corpus of its own) with `report.json` beside them. In a
    v2 corpus each run is padded to the rows of its stack in the corpus's plan (its float
    rounding depends on them) and its agent measures alone, as the corpus was trained.
    """
    from trainer.summary import CHECK_DIR

    directory = Path(directory)
    source = corpus_io.load(directory)
    memorized = sorted((r for r in source if r.outcome == "memorization"), key=lambda r: r.run_id)
    sample = random.Random(seed).sample(memorized, min(n, len(memorized)))
    out = directory / CHECK_DIR
    name = f"check-x{factor}"
    # the check is a corpus of the same version as the one it checks, trained the same way
    stack = 16 if source.version >= 2 else 1
    corpus_io.register_spec(
        out, {"name": name, "factor": factor, "n": n, "seed": seed}, "check",
        version=source.version,
    )  # fmt: skip
    tasks = [
        RunTask(
            run_id=f"{r.run_id}-x{factor}",
            spec=name,
            family=r.family,
            split=r.split,
            config={**r.config, "steps": factor * int(r.labels["budget"])},
            every=int(r.meta["every"]),
            tail=float(r.meta["tail"]),
            tail_min=int(r.meta["tail_min"]),
            max_samples=int(r.meta["max_samples"]),
        )
        for r in sample
    ]
    by_id = {f"{r.run_id}-x{factor}": r for r in sample}  # check run -> the corpus run
    padding = None
    if stack > 1:
        padded = _padded_rows(source, sample, stack)
        padding = {check_id: padded[r.run_id] for check_id, r in by_id.items()}
    execute(tasks, out, executor=executor, workers=workers, progress=progress, stack=stack,
            version=source.version, stack_fn=run_stack_probes_per_run, rows=padding)  # fmt: skip
    later, ratios, same, rows = 0, [], 0, []
    for run in corpus_io.load(out):
        original = by_id.get(run.run_id)
        if original is None:
            continue
        budget = int(original.labels["budget"])
        t_grok = run.labels.get("t_grok")
        same += run.labels.get("t_mem") == original.labels.get("t_mem")
        if t_grok is not None:
            later += 1
            ratios.append(round(t_grok / budget, 2))
        rows.append({"run_id": original.run_id, "wd": original.config["wd"], "budget": budget,
                     "t_grok": t_grok, "outcome_at_factor": run.outcome})  # fmt: skip
    checked = len(rows)
    report = {
        "checked": checked,
        "factor": factor,
        "grokked_later": later,
        "mislabel_rate": later / checked if checked else 0.0,
        "t_grok_over_budget": sorted(ratios),
        "same_prefix": same,
        "with_weight_decay": sum(r["wd"] > 0 for r in rows),
        "grokked_later_with_weight_decay": sum(
            r["wd"] > 0 and r["t_grok"] is not None for r in rows
        ),
        "runs": rows,
    }
    corpus_io.atomic_write(out / "report.json", (json.dumps(report, indent=2) + "\n").encode())
    return report


def _padded_rows(source: corpus_io.Corpus, runs: list[Any], stack: int) -> dict[str, int]:
    """The rows each of `runs` was padded to in `source`: its file's `meta.padded_rows` (written
    since the plan fixes the padding), else its stack's in the plan of `source`'s specs."""
    rows = {r.run_id: int(r.meta["padded_rows"]) for r in runs if "padded_rows" in r.meta}
    if len(rows) < len(runs):
        planned = [t for entry in source.manifest["specs"].values()
                   for t in SweepSpec.from_dict(entry).tasks()]  # fmt: skip
        plan = {t.run_id: n for s, n in pending_stacks(planned, planned, stack) for t in s}
        unplanned = sorted(r.run_id for r in runs if r.run_id not in rows | plan)
        if unplanned:
            raise ValueError(f"runs no spec of the manifest draws: {unplanned}")
        rows.update({r.run_id: plan[r.run_id] for r in runs if r.run_id not in rows})
    return rows
