"""The corpus format: round trips, atomic writes, resume bookkeeping, versions refused."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trainer import corpus
from trainer.corpus import CorpusFormatError


def meta(run_id: str, outcome: str | None = "grokking", **extra: Any) -> dict[str, Any]:
    labels = {"outcome": outcome, "t_mem": 100, "t_grok": 900, "gap": 800, "sharpness": 0.1,
              "budget": 2000} if outcome else {}  # fmt: skip
    return {"run_id": run_id, "spec": "s", "family": "mlp", "split": "train",
            "status": "ok" if outcome else "failed", "config": {"p": 7}, "labels": labels,
            **extra}  # fmt: skip


def make_corpus(tmp_path: Path) -> Path:
    corpus.register_spec(tmp_path, {"name": "s", "holdout": {"op": ["div"]}}, "train")
    corpus.write_run(
        tmp_path, meta("a"), [1, 50, 100], ["test_accuracy", "train_accuracy"],
        np.array([[0.0, 0.1], [0.2, 1.0], [0.95, np.nan]]),
    )  # fmt: skip
    corpus.write_run(
        tmp_path, meta("b", "memorization"), [1, 50], ["weight_norm", "train_accuracy"],
        np.array([[3.0, 0.2], [2.0, 1.0]]),
    )  # fmt: skip
    corpus.write_run(tmp_path, meta("c", None, error="ValueError: boom"))
    return tmp_path


def test_round_trip_and_arrays(tmp_path: Path) -> None:
    c = corpus.load(make_corpus(tmp_path))
    assert [r.run_id for r in c] == ["a", "b"]  # failed runs only on request
    assert c.manifest["holdout"] == {"op": ["div"]}
    assert c.manifest["specs"]["s"]["role"] == "train"
    a = c.runs[0]
    assert a.steps.dtype == np.int64 and a.values.dtype == np.float32
    np.testing.assert_allclose(a.series("test_accuracy"), [0.0, 0.2, 0.95], rtol=1e-6)
    assert np.isnan(a.series("train_accuracy")[2]) and np.isnan(a.series("nope")).all()
    assert list(c.labels()) == ["grokking", "memorization"]
    values, steps, lengths = c.arrays()
    assert c.columns == ("test_accuracy", "train_accuracy", "weight_norm")
    assert values.shape == (2, 3, 3) and list(lengths) == [3, 2]
    assert steps[1].tolist() == [1, 50, -1]
    assert np.isnan(values[1, 2]).all()  # padding after the run's end
    assert np.isnan(values[0, :, 2]).all()  # run a never measured weight_norm
    np.testing.assert_allclose(values[1, :2, 2], [3.0, 2.0])
    table = c.label_table()
    assert table["outcome"].tolist() == ["grokking", "memorization"]
    assert table["t_grok"][0] == 900 and table["budget"].tolist() == [2000, 2000]
    assert c.counts() == {"mlp": {"grokking": 1, "memorization": 1}}
    failed = corpus.load(tmp_path, include_failed=True)
    assert failed.counts()["mlp"]["failed"] == 1
    assert failed.select(status="failed").runs[0].meta["error"] == "ValueError: boom"
    assert len(corpus.load(tmp_path, family="digits")) == 0


def test_resume_bookkeeping(tmp_path: Path) -> None:
    make_corpus(tmp_path)
    assert corpus.finished_ids(tmp_path) == {"a", "b", "c"}
    assert corpus.finished_ids(tmp_path, include_failed=False) == {"a", "b"}
    # rewriting a run replaces it: one file per id, never two
    corpus.write_run(tmp_path, meta("c", "confusion"))
    assert len(list((tmp_path / "runs").glob("c*"))) == 1
    assert corpus.load(tmp_path).counts()["mlp"]["confusion"] == 1


def test_a_killed_writer_leaves_no_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_corpus(tmp_path)

    def killed(src: str, dst: str) -> None:
        raise KeyboardInterrupt  # the process dies between writing and renaming

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        corpus.write_run(tmp_path, meta("d"), [1], ["x"], np.zeros((1, 1)))
    monkeypatch.undo()
    assert "d" not in corpus.finished_ids(tmp_path)
    # a hard kill (no cleanup) leaves at most a hidden temporary: ignored, then cleaned
    (tmp_path / "runs" / ".d.npz.abc.tmp").write_bytes(b"half a zip")
    assert len(corpus.load(tmp_path)) == 2
    assert corpus.clean_temporaries(tmp_path) == 1
    assert not list((tmp_path / "runs").glob(".*"))


def test_unknown_versions_are_refused(tmp_path: Path) -> None:
    make_corpus(tmp_path)
    manifest = json.loads((tmp_path / "corpus.json").read_text())
    (tmp_path / "corpus.json").write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(CorpusFormatError, match="version 99"):
        corpus.load(tmp_path)
    (tmp_path / "corpus.json").write_text(json.dumps(manifest))
    path = corpus.run_path(tmp_path, "a")
    with np.load(path) as z:
        arrays = dict(z)
    arrays["format_version"] = np.array(99)
    np.savez_compressed(path, **arrays)
    with pytest.raises(CorpusFormatError, match="version 99"):
        corpus.load(tmp_path)
    # a v2 run in a v1 corpus: both versions are known, but one directory holds one version
    arrays["format_version"] = np.array(2)
    np.savez_compressed(path, **arrays)
    with pytest.raises(CorpusFormatError, match="one directory holds one corpus version"):
        corpus.load(tmp_path)
    path.write_bytes(b"not a zip")
    with pytest.raises(CorpusFormatError, match="not a readable"):
        corpus.read_run(path)
    with pytest.raises(CorpusFormatError, match=r"no corpus\.json"):
        corpus.load(tmp_path / "nowhere")


def test_v1_is_read_and_refused_where_v2_is_asked_for(tmp_path: Path) -> None:
    make_corpus(tmp_path)
    assert corpus.load(tmp_path).version == 1
    with pytest.raises(CorpusFormatError, match="corpus_v1"):
        corpus.load(tmp_path, version=2)
    with pytest.raises(CorpusFormatError, match="a directory of its own"):
        corpus.register_spec(tmp_path, {"name": "v2"}, "train", version=2)


def test_values_must_match_steps_and_columns(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="values must be"):
        corpus.write_run(tmp_path, meta("a"), [1, 2], ["x"], np.zeros((3, 1)))
