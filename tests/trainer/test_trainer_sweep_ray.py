"""The Ray backend against a real local Ray instance (one CPU, no dashboard): not mocked."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer import corpus
from trainer.spec import SweepSpec
from trainer.sweep import RayExecutor, sweep

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install .[ray])")


def test_ray_backend_runs_a_sweep_and_records_failures(tmp_path: Path) -> None:
    spec = SweepSpec.from_dict({
        "name": "ray", "family": "mlp", "n_runs": 2, "every": 25, "budget": 50,
        "space": {"p": 7, "frac": 0.6, "lr": 1e-2, "d_emb": 8, "d_hidden": 16},
    })  # fmt: skip
    with RayExecutor(num_cpus=1) as executor:
        assert ray.is_initialized()
        report = sweep([spec], tmp_path, executor=executor, progress=False)
    assert not ray.is_initialized()  # the executor started Ray, so it stops it
    assert (report.done, report.failed) == (2, 0)
    runs = corpus.load(tmp_path)
    assert len(runs) == 2 and all(r.outcome in corpus.OUTCOMES for r in runs)
