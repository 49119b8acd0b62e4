"""Sweep specs: bad input is refused before anything runs, naming the key; expansion is
reproducible, budgets follow the rule, held-out ops and moduli are marked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trainer.spec import Budget, SpecError, SweepSpec, load_spec, run_id_of
from trainer.sweep import main

BASE: dict[str, Any] = {
    "name": "t",
    "family": "mlp",
    "n_runs": 6,
    "seed": 3,
    "every": 25,
    "budget": {"k": 2.0, "min": 100, "max": 400, "no_decay": 200},
    "space": {
        "p": {"choice": [7, 11, 13], "weights": [3, 1, 1]},
        "op": ["add", "div"],
        "frac": {"uniform": [0.4, 0.8]},
        "lr": {"loguniform": [1e-3, 1e-2]},
        "wd": {"choice": [0.0, {"uniform": [0.5, 2.0]}], "weights": [1, 3]},
        "d_emb": 8,
        "d_hidden": 16,
    },
    "holdout": {"op": ["div"]},
}


def spec(**changes: Any) -> dict[str, Any]:
    d = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        if key.startswith("space."):
            d["space"][key.removeprefix("space.")] = value
        else:
            d[key] = value
    return d


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"colour": "red"}, "'colour'"),  # unknown top-level key
        ({"space.widht": 3}, "'widht'"),  # unknown config key
        ({"space.steps": 10}, "'steps'"),  # the budget decides steps
        ({"space.lr": {"loguniform": [1e-3, 1e-2], "base": 2}}, "'base'"),
        ({"space.frac": {"uniform": [0.5, 1.0]}}, "frac"),  # fraction outside (0, 1)
        ({"space.frac": [0.0, 0.5]}, "frac"),
        ({"space.p": [7, 9]}, "p"),  # 9 is not prime and op "div" can be drawn
        ({"space.p": [7, 11], "space.op": "div", "space.d_emb": -1}, "d_emb"),
        ({"space.wd": {"uniform": [-1.0, 1.0]}}, "wd"),
        ({"space.lr": {"loguniform": [0.0, 1e-2]}}, "lr"),
        ({"space.depth": {"int": [1, 3]}}, "depth"),
        ({"budget": {"k": 1, "minimum": 3}}, "'minimum'"),
        ({"family": "cnn"}, "family"),
        ({"every": 0}, "every"),
        ({"holdout": {"opp": ["div"]}}, "'opp'"),
    ],
)
def test_bad_specs_are_refused_naming_the_key(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(SpecError, match=named):
        SweepSpec.from_dict(spec(**changes))


@pytest.mark.parametrize(
    "changes",
    [
        {"n_runs": 0},
        {"space.p": []},
        {"space.p": {"choice": []}},
        {"mixture": [{"weight": 0, "space": {}}]},
    ],
)
def test_an_empty_space_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(SpecError, match="empty"):
        SweepSpec.from_dict(spec(**changes))


def test_a_grid_takes_lists_not_distributions() -> None:
    grid = {"name": "g", "family": "mlp", "sampler": "grid", "budget": 100,
            "space": {"p": [7, 11], "wd": [0.0, 1.0], "frac": {"uniform": [0.3, 0.6]}}}  # fmt: skip
    with pytest.raises(SpecError, match="frac"):
        SweepSpec.from_dict(grid)
    del grid["space"]["frac"]
    tasks = SweepSpec.from_dict(grid).tasks()
    assert sorted((t.config["p"], t.config["wd"]) for t in tasks) == [
        (7, 0.0), (7, 1.0), (11, 0.0), (11, 1.0),
    ]  # fmt: skip


def test_expansion_is_reproducible_and_grows_by_extension() -> None:
    a = SweepSpec.from_dict(spec()).tasks()
    b = SweepSpec.from_dict(spec()).tasks()
    assert [t.run_id for t in a] == [t.run_id for t in b]
    assert len({t.run_id for t in a}) == len(a) == 6
    # more draws with the same seed keep the first ones: a pilot is the start of the full run
    grown = SweepSpec.from_dict(spec(n_runs=10)).tasks()
    assert [t.run_id for t in grown[:6]] == [t.run_id for t in a]
    # seeds are drawn per run, and the resolved config is complete
    assert len({t.config["seed"] for t in a}) == 6
    assert all(t.config["eval_every"] == 25 for t in a)


def test_budget_rule_and_splits() -> None:
    s = SweepSpec.from_dict(spec(n_runs=40))
    for t in s.tasks():
        c = t.config
        expected = Budget(k=2.0, min=100, max=400, no_decay=200).steps(c, 25)
        assert t.budget == c["steps"] == expected
        assert t.budget % 25 == 0 and 100 <= t.budget <= 400
        if c["wd"] == 0:
            assert t.budget == 200
        assert t.split == ("heldout" if c["op"] == "div" else "train")
    assert (
        Budget(k=1.0, min=10, max=10**6, frac_power=1.0).steps(
            {"lr": 1e-3, "wd": 1.0, "frac": 0.25}, 50
        )
        == 2000
    )  # 1/(lr·wd) = 1000 steps, × 0.5/0.25


def test_eval_families_are_marked_eval() -> None:
    d = {"name": "tf", "family": "transformer", "n_runs": 2, "budget": 100,
         "space": {"p": 7, "d_model": 8, "n_heads": 2, "d_mlp": 16}}  # fmt: skip
    assert {t.split for t in SweepSpec.from_dict(d).tasks()} == {"eval"}
    d["space"]["n_heads"] = 3  # 8 is not divisible by 3
    with pytest.raises(SpecError, match="n_heads"):
        SweepSpec.from_dict(d)


def test_run_id_depends_on_everything_that_changes_the_run() -> None:
    config = SweepSpec.from_dict(spec()).tasks()[0].config
    assert run_id_of("mlp", config, 25, 2048) == run_id_of("mlp", dict(config), 25, 2048)
    assert run_id_of("mlp", config, 25, 2048) != run_id_of("mlp", config, 50, 2048)
    assert run_id_of("mlp", config, 25, 2048) != run_id_of("mlp", {**config, "seed": 1}, 25, 2048)


def test_cli_refuses_a_bad_spec_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec(**{"space.frac": {"uniform": [0.2, 1.5]}})))
    out = tmp_path / "corpus"
    with pytest.raises(SystemExit):
        main(["--spec", str(path), "--out", str(out)])
    assert "frac" in capsys.readouterr().err
    assert not out.exists()  # nothing was written, nothing was trained
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(SpecError, match="JSON"):
        load_spec(broken)


def test_the_committed_specs_are_valid() -> None:
    specs = sorted(Path(__file__).parents[2].joinpath("trainer", "specs").glob("*.json"))
    for path in specs:
        s = load_spec(path)
        assert s.tasks()
