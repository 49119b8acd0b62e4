"""The summary command (outcome tables, phase diagram) and the slow-grokker check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trainer import corpus
from trainer.spec import SweepSpec
from trainer.summary import CHECK_DIR, main, outcome_table
from trainer.sweep import InlineExecutor, check_memorization, sweep


def fake_corpus(directory: Path) -> Path:
    corpus.register_spec(directory, {"name": "s"}, "train")
    rng = np.random.default_rng(0)
    outcomes = ["grokking"] * 3 + ["memorization"] * 2 + ["comprehension", "confusion"]
    for i, outcome in enumerate(outcomes):
        family = "digits" if i == 6 else "mlp"
        config = {"wd": float(rng.uniform(0, 2)), "frac": 0.5, "init_scale": 8.0}
        if family == "digits":
            del config["frac"]
        meta = {"run_id": f"r{i}", "family": family, "split": "train", "status": "ok",
                "config": config, "labels": {"outcome": outcome}, "wall_time": 36.0}  # fmt: skip
        corpus.write_run(directory, meta, [1], ["x"], np.zeros((1, 1)))
    failed = {"run_id": "bad", "family": "mlp", "split": "train", "status": "failed",
              "config": {}, "error": "ValueError: x"}  # fmt: skip
    corpus.write_run(directory, failed)
    return directory


def test_outcome_table_counts_and_shares(tmp_path: Path) -> None:
    c = corpus.load(fake_corpus(tmp_path), include_failed=True)
    table = outcome_table(c)
    assert "| mlp | 7 | 3 (50 %) | 1 (17 %) | 2 (33 %) | 0 (0 %) | 1 |" in table
    assert "| digits | 1 | 0 (0 %) | 0 (0 %) | 0 (0 %) | 1 (100 %) | 0 |" in table
    assert "| mlp / train |" in outcome_table(c, by="split")


def test_summary_command_writes_the_phase_diagram(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "out" / "phase.png"
    main([str(fake_corpus(tmp_path / "c")), "--png", str(png)])
    text = capsys.readouterr().out
    assert "| mlp | 7 |" in text and "1 failed runs" in text and "mlp 0.06 h" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit):
        main([str(tmp_path / "nowhere")])


def test_memorization_check_continues_runs_to_a_multiple_of_the_budget(tmp_path: Path) -> None:
    spec = SweepSpec.from_dict({
        "name": "tiny", "family": "mlp", "n_runs": 2, "every": 25, "budget": 100,
        "space": {"p": 7, "frac": 0.8, "lr": 1e-2, "d_emb": 8, "d_hidden": 16, "wd": 0.0},
    })  # fmt: skip
    sweep([spec], tmp_path, executor=InlineExecutor(), progress=False)
    assert {r.outcome for r in corpus.load(tmp_path)} == {"memorization"}
    report = check_memorization(tmp_path, 1, factor=2, executor=InlineExecutor(), progress=False)
    assert report["checked"] == 1 and report["same_prefix"] == 1
    assert report["grokked_later"] == 0 and report["with_weight_decay"] == 0
    continued = corpus.load(tmp_path / CHECK_DIR).runs[0]
    assert continued.labels["budget"] == 200 and continued.steps[-1] == 200
    saved = json.loads((tmp_path / CHECK_DIR / "report.json").read_text())
    assert saved["runs"][0]["budget"] == 100
    # the main corpus is untouched by the check
    assert len(corpus.load(tmp_path)) == 2
