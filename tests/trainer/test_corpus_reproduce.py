"""`benchmarks/corpus_reproduce.py`: the check that the sweep command gives the committed runs.

A tiny corpus is written by the sweep itself (`--probes per-run`, as corpus v2 was trained);
the check must then find every run equal over a prefix and whole, and must find a run that
differs. The prefix mode once compared a shortened run as if it were whole (the shortened
task's budget is its prefix), so every run of the corpus read "differing at step 1".
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.corpus_reproduce import check_stack
from trainer.corpus import read_run, run_path, write_run
from trainer.execution import pending_stacks
from trainer.executors import InlineExecutor
from trainer.spec import SweepSpec
from trainer.sweep import sweep

SPEC = SweepSpec.from_dict({
    "name": "tiny-reproduce", "family": "mlp", "role": "train", "sampler": "grid", "every": 30,
    "budget": 90, "space": {"p": 23, "frac": [0.5, 0.7], "lr": 1e-2, "d_emb": 16, "d_hidden": 32},
})  # fmt: skip


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any], int]:
    """The tiny corpus as the sweep writes it, and its one stack with the rows it pads to."""
    out = tmp_path_factory.mktemp("corpus")
    sweep([SPEC], out, executor=InlineExecutor(), progress=False, stack=4, probes="per-run")
    ((stack, rows),) = pending_stacks(SPEC.tasks(), SPEC.tasks(), 4)
    return out, stack, rows


def test_the_check_finds_the_sweeps_own_runs_equal_over_a_prefix_and_whole(written) -> None:
    corpus, stack, rows = written
    for steps in (60, 10_000):  # a prefix, then whole runs
        rows_out = check_stack(stack, rows, steps, str(corpus))
        assert len(rows_out) == 2
        assert all(r["first_difference"] is None for r in rows_out), rows_out


def test_the_check_finds_a_run_that_differs_and_where(written, tmp_path) -> None:
    corpus, stack, rows = written
    changed = tmp_path / "changed"
    shutil.copytree(corpus, changed)
    path = run_path(changed, stack[0].run_id)
    run = read_run(path)
    values = run.values.copy()
    col = list(run.columns).index("test_loss")
    values[2, col] += 1.0  # the third evaluation, step 60
    write_run(changed, run.meta, run.steps, run.columns, values, version=2)
    rows_out = {r["run_id"]: r for r in check_stack(stack, rows, 90, str(changed))}
    assert rows_out[stack[0].run_id]["first_difference"] == int(run.steps[2])
    assert rows_out[stack[0].run_id]["columns"] == ["test_loss"]
    assert rows_out[stack[1].run_id]["first_difference"] is None
    assert np.array_equal(read_run(run_path(corpus, stack[0].run_id)).steps, run.steps)
