"""The Ray backend against a real local Ray instance (one CPU, no dashboard): not mocked."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from trainer import corpus
from trainer.spec import SweepSpec
from trainer.sweep import RayExecutor, execute

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install .[ray])")


def test_ray_backend_runs_a_sweep_and_records_failures(tmp_path: Path) -> None:
    spec = SweepSpec.from_dict({
        "name": "ray", "family": "mlp", "n_runs": 2, "every": 25, "budget": 50,
        "space": {"p": 7, "frac": 0.6, "lr": 1e-2, "d_emb": 8, "d_hidden": 16},
    })  # fmt: skip
    tasks = spec.tasks()
    # a run that fails inside the Ray worker: no inverse mod 9
    bad = dataclasses.replace(tasks[0], run_id="bad", config={**tasks[0].config, "p": 9,
                                                              "op": "div"})  # fmt: skip
    corpus.register_spec(tmp_path, spec.to_dict(), "train")
    with RayExecutor(num_cpus=1) as executor:
        assert ray.is_initialized()
        report = execute([*tasks, bad], tmp_path, executor=executor, progress=False)
    assert not ray.is_initialized()  # the executor started Ray, so it stops it
    assert (report.done, report.failed) == (3, 1)
    runs = corpus.load(tmp_path)
    assert len(runs) == 2 and all(r.outcome in corpus.OUTCOMES for r in runs)
    failed = corpus.read_run(corpus.run_path(tmp_path, "bad"))
    assert failed.status == "failed" and "prime" in failed.meta["error"]
