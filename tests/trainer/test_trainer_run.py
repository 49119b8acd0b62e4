"""The command line: every RunConfig field is a flag, and a run leaves its config and history."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from trainer.config import RunConfig
from trainer.run import config_from_args, main, make_parser

TINY = ["--p", "11", "--frac", "0.6", "--d-emb", "8", "--d_hidden", "16", "--steps", "20"]


def test_every_config_field_is_a_flag() -> None:
    dests = {a.dest for a in make_parser()._actions}
    assert {f.name for f in dataclasses.fields(RunConfig)} <= dests
    assert {"out", "no_agent"} <= dests


def test_flags_round_trip_every_field() -> None:
    want = RunConfig(
        p=31, op="div", frac=0.3, lr=3e-3, wd=0.1, steps=77, seed=4, data_seed=5, d_emb=8,
        d_hidden=24, depth=2, init_scale=2.0, embedding=True, factorized=False,
        betas=(0.8, 0.95), eval_every=7, optimizer="grokfast", grokfast_alpha=0.9,
        grokfast_lamb=1.0, device="cpu", threads=1,
    )  # fmt: skip
    argv = [
        "--p", "31", "--op", "div", "--frac", "0.3", "--lr", "3e-3", "--wd", "0.1",
        "--steps", "77", "--seed", "4", "--data-seed", "5", "--d_emb", "8", "--d-hidden", "24",
        "--depth", "2", "--init-scale", "2", "--embedding", "--no-factorized",
        "--betas", "0.8", "0.95", "--eval-every", "7", "--optimizer", "grokfast",
        "--grokfast-alpha", "0.9", "--grokfast-lamb", "1", "--device", "cpu", "--threads", "1",
    ]  # fmt: skip
    assert config_from_args(make_parser().parse_args(argv)) == want
    assert config_from_args(make_parser().parse_args([])) == RunConfig()


def test_run_without_agent_writes_config_and_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = main([*TINY, "--eval-every", "10", "--no-agent", "--out", str(tmp_path)])
    assert RunConfig.load(tmp_path / "config.json") == result.config
    saved = json.loads((tmp_path / "history.json").read_text())
    assert [r["step"] for r in saved["history"]] == [0, 10, 20]
    assert saved["steps"] == 20
    assert set(saved) >= {"t_mem", "t_grok", "wall_time"}
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4  # three evaluations and the summary
    assert lines[1].startswith("step     10 | loss ")
    assert lines[-1].startswith("t_mem ")


def test_bad_flag_value_exits_with_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([*TINY, "--lr", "-1", "--no-agent"])
    assert "lr=" in capsys.readouterr().err


def test_run_with_grokwatch_agent(tmp_path: Path) -> None:
    pytest.importorskip("grokwatch.agent")
    result = main([*TINY, "--eval-every", "10", "--out", str(tmp_path), "--quiet"])
    assert result.steps == 20
    assert (tmp_path / "history.json").exists()
