"""Sweeps: run_one trains with the real agent and labels the run; failures are recorded and
do not stop the sweep; a restarted sweep skips what is done; the local pool and the evaluation
families work end to end."""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from grokwatch import PROBES, Decision, Reason
from grokwatch.events import outcome
from trainer import corpus
from trainer.config import RunConfig
from trainer.families import DigitsConfig, TransformerConfig
from trainer.spec import RunTask, SweepSpec
from trainer.sweep import (
    InlineExecutor,
    RunResult,
    StopAfterGeneralization,
    cpu_quota,
    history_arrays,
    run_one,
    sweep,
)

TINY = RunConfig(p=11, frac=0.6, lr=1e-2, d_emb=8, d_hidden=16, steps=100, eval_every=25)


def task(config: Any = TINY, family: str = "mlp", run_id: str = "r0") -> RunTask:
    cfg = config.to_dict() if hasattr(config, "to_dict") else config
    return RunTask(run_id, "s", family, "train", cfg, every=25, tail=0.5, tail_min=50,
                   max_samples=2048)  # fmt: skip


def tiny_spec(n_runs: int = 3, **space: Any) -> SweepSpec:
    return SweepSpec.from_dict({
        "name": "tiny", "family": "mlp", "n_runs": n_runs, "every": 25, "budget": 75,
        "space": {"p": [7, 11], "frac": 0.6, "lr": 1e-2, "d_emb": 8, "d_hidden": 16, **space},
    })  # fmt: skip


def test_run_one_records_every_probe_at_the_cadence_and_labels_the_run() -> None:
    result = run_one(task())
    assert result.status == "ok", result.error
    assert result.steps.tolist() == [1, 25, 50, 75, 100]
    assert result.values.shape == (5, len(result.columns))
    # every built-in probe ran and reported ok on the MLP
    assert set(result.agent["probe_status"]) == set(PROBES)
    assert set(result.agent["probe_status"].values()) == {"ok"}, result.agent["probe_status"]
    for key in ("train_accuracy", "test_accuracy", "weight_norm", "fourier_gini"):
        assert key in result.columns
    labels = result.labels
    assert set(labels) == {"outcome", "t_mem", "t_grok", "gap", "sharpness", "budget"}
    assert labels["budget"] == 100 and result.steps_run == 100
    # the label is the project's rule applied to the stored accuracy curves
    train_acc = result.values[:, result.columns.index("train_accuracy")]
    test_acc = result.values[:, result.columns.index("test_accuracy")]
    t_mem = next((int(s) for s, a in zip(result.steps, train_acc, strict=True) if a >= 0.99), None)
    t_grok = next((int(s) for s, a in zip(result.steps, test_acc, strict=True) if a >= 0.9), None)
    assert (labels["t_mem"], labels["t_grok"]) == (t_mem, t_grok)
    assert labels["outcome"] == outcome(t_mem, t_grok).value


def test_run_one_records_a_failure_instead_of_raising() -> None:
    bad = {**TINY.to_dict(), "p": 9, "op": "div"}  # no inverse mod 9
    result = run_one(task(bad))
    assert result.status == "failed" and "prime" in result.error and result.labels == {}


@dataclasses.dataclass
class _Events:
    t_grok: int | None = None


class _FakeAgent:
    every = 10

    def __init__(self) -> None:
        self.events, self.closed = _Events(), False

    def step(self, step: int, *, loss: Any) -> Decision:
        if step == 200:
            self.events.t_grok = 200
        return Decision.keep_going(step, Reason.NO_FORECASTER, "keep going")

    def close(self) -> None:
        self.closed = True


def test_stop_after_generalization_waits_for_the_tail_on_an_evaluation() -> None:
    agent = _FakeAgent()
    wrapper = StopAfterGeneralization(agent, tail=0.5, tail_min=50)
    decisions = {s: wrapper.step(s, loss=None) for s in range(1, 400)}
    stops = [s for s, d in decisions.items() if d.should_stop]
    assert stops[0] == 300  # t_grok + max(0.5 · 200, 50), an evaluation step
    assert decisions[300].reason is Reason.FINISHED and "settled" in decisions[300].message
    wrapper.close()
    assert agent.closed


def test_history_arrays_nan_policy() -> None:
    steps, columns, values = history_arrays(
        [(1, {"a": 1.0, "b": math.inf}), (25, {"a": 2.0, "c": math.nan})]
    )
    assert steps.tolist() == [1, 25] and columns == ("a", "b", "c")
    assert values[0, 0] == 1.0 and np.isnan(values[0, 1]) and np.isnan(values[0, 2])
    assert np.isnan(values[1, 1]) and np.isnan(values[1, 2])


def test_history_arrays_a_value_beyond_float32_is_nan_not_inf() -> None:
    # finite as a Python float, inf once cast to the corpus's float32 (3 committed runs held
    # such infs of loss_spectral_energy before the cast was checked)
    _, _, values = history_arrays([(1, {"a": 1e39, "b": -1e39, "c": 3e38})])
    assert np.isnan(values[0, 0]) and np.isnan(values[0, 1])
    assert values[0, 2] == np.float32(3e38)


def _fail_on_p7(t: RunTask) -> RunResult:
    if t.config["p"] == 7:
        raise RuntimeError("worker lost")
    return run_one(t)


def test_failures_are_recorded_and_a_restarted_sweep_never_duplicates(tmp_path: Path) -> None:
    spec = tiny_spec(n_runs=4)
    report = sweep([spec], tmp_path, executor=InlineExecutor(), progress=False, fn=_fail_on_p7)
    n_p7 = sum(t.config["p"] == 7 for t in spec.tasks())
    assert 0 < n_p7 < 4
    assert (report.total, report.done, report.failed) == (4, 4, n_p7)
    stored = corpus.load(tmp_path, include_failed=True)
    assert len(stored) == 4 and len(corpus.load(tmp_path)) == 4 - n_p7
    assert all("worker lost" in r.meta["error"] for r in stored.select(status="failed"))

    again = sweep([spec], tmp_path, executor=InlineExecutor(), progress=False, fn=_fail_on_p7)
    assert (again.skipped, again.done) == (4, 0)
    # a grown spec trains only the new draws; --retry-failed reruns the failed ones
    grown = tiny_spec(n_runs=5)
    third = sweep([grown], tmp_path, executor=InlineExecutor(), progress=False, retry_failed=True)
    assert third.done == n_p7 + 1 and third.failed == 0
    assert len(list((tmp_path / "runs").glob("*.npz"))) == 5
    assert len(corpus.load(tmp_path)) == 5


def test_local_spawn_pool_end_to_end(tmp_path: Path) -> None:
    # one worker, two tiny runs: the real path of `python -m trainer.sweep`
    report = sweep([tiny_spec(n_runs=2)], tmp_path, workers=1, progress=False)
    assert report.done == 2 and report.failed == 0
    c = corpus.load(tmp_path)
    assert {r.meta["config"]["threads"] for r in c} == {None}
    assert all(r.meta["labels"]["outcome"] in corpus.OUTCOMES for r in c)


def test_any_executor_is_accepted(tmp_path: Path) -> None:
    with cf.ThreadPoolExecutor(max_workers=1) as pool:
        report = sweep([tiny_spec(n_runs=1)], tmp_path, executor=pool, progress=False)
    assert report.done == 1


@pytest.mark.parametrize(
    ("config", "family", "absent"),
    [
        (TransformerConfig(p=7, frac=0.6, d_model=8, n_heads=2, d_mlp=16, steps=50), "transformer",
         set()),
        (DigitsConfig(n_train=50, width=16, steps=50), "digits",
         {"embedding_structure", "embedding_bimodality", "fourier_sparsity"}),
    ],
)  # fmt: skip
def test_evaluation_families_run_with_every_applicable_probe(
    config: Any, family: str, absent: set[str]
) -> None:
    result = run_one(task(config, family))
    assert result.status == "ok", result.error
    status = result.agent["probe_status"]
    assert {k for k, v in status.items() if v != "ok"} == absent, status
    assert result.labels["outcome"] in corpus.OUTCOMES


def test_cpu_quota_is_within_the_affinity_mask() -> None:
    assert 1 <= cpu_quota() <= len(os.sched_getaffinity(0))
