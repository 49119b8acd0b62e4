"""The stack's batched probes (`trainer.stacked_probes`) change no training number and measure
what each agent measures alone, within the stated tolerance; stacks start in either order.

Tolerance (docs/corpus.md): training columns, labels and probe statuses bitwise equal; the
batched probes' columns equal up to float rounding of the forward — circuit complexity within
1e-4 relative, the dropout accuracies within one probe row (1 / test rows) — because an arg-max
may flip on a near tie. Measured on real runs by `benchmarks/corpus_probe_tolerance.py`
(`benchmarks/results/corpus/probe_tolerance.json`, docs/corpus.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from trainer.execution import plan_stacks, stack_cost
from trainer.families import FAMILIES
from trainer.runner import RunResult
from trainer.spec import RunTask, run_id_of
from trainer.stacked import train_stack
from trainer.stacked_probes import BATCHED, StackedProbe

STEPS = 60
CIRCUIT = ("circuit_complexity", "circuit_complexity_mean")
ACCURACIES = ("mc_dropout_accuracy_mean", "mc_dropout_accuracy_var", "dropout_robustness_auc")


def task(family: str, steps: int = STEPS, **config: Any) -> RunTask:
    resolved = FAMILIES[family].config_cls.from_dict({"steps": steps, **config}).to_dict()
    return RunTask(
        run_id=run_id_of(family, resolved, 10, 256), spec="test", family=family,
        split="train", config=resolved, every=10, tail=0.5, tail_min=500, max_samples=256,
    )  # fmt: skip


# Two or three runs of one shape per family, with different sizes of test set (padded rows)
# and budgets (runs leave the stack at different steps).
CASES: dict[str, list[dict[str, Any]]] = {
    "mlp": [
        {"p": 23, "frac": 0.5, "lr": 1e-2, "seed": 1, "d_emb": 16, "d_hidden": 32},
        {"p": 23, "frac": 0.3, "lr": 1e-2, "seed": 2, "d_emb": 16, "d_hidden": 32,
         "optimizer": "grokfast", "steps": 40},
    ],
    "onehot": [
        {"p": 23, "frac": 0.5, "seed": 1, "d_hidden": 32, "embedding": False},
        {"p": 23, "frac": 0.7, "seed": 2, "d_hidden": 32, "embedding": False, "wd": 0.3},
    ],
    "transformer": [
        {"p": 23, "seed": 1, "d_model": 16, "n_heads": 2, "d_mlp": 32, "n_layers": 2,
         "layernorm": True, "frac": 0.5},
        {"p": 23, "seed": 2, "d_model": 16, "n_heads": 2, "d_mlp": 32, "n_layers": 2,
         "layernorm": True, "frac": 0.7, "steps": 30},
    ],
    "digits": [
        {"n_train": 100, "seed": 1, "width": 32, "loss": "mse", "init_scale": 3.0},
        {"n_train": 150, "seed": 2, "width": 32, "loss": "mse", "init_scale": 3.0},
    ],
    "parity": [
        {"n_bits": 16, "k": 3, "n_train": 120, "n_test": 50, "seed": 1, "width": 32},
        {"n_bits": 16, "k": 3, "n_train": 200, "n_test": 70, "seed": 2, "width": 32},
    ],
    "perm": [
        {"n": 4, "seed": 1, "d_emb": 16, "d_hidden": 32, "frac": 0.5},
        {"n": 4, "seed": 2, "d_emb": 16, "d_hidden": 32, "frac": 0.8, "steps": 50},
    ],
}  # fmt: skip


def by_id(results: list[RunResult]) -> dict[str, RunResult]:
    assert [r.status for r in results] == ["ok"] * len(results), [r.error for r in results]
    return {r.task.run_id: r for r in results}


@pytest.mark.parametrize("family", sorted(CASES))
def test_batched_probes_change_no_training_number_and_match_each_agent_alone(
    family: str,
) -> None:
    tasks = [task(family, **c) for c in CASES[family]]
    alone = by_id(train_stack(tasks, batched_probes=False))
    batched = by_id(train_stack(tasks))
    for t in tasks:
        a, b = alone[t.run_id], batched[t.run_id]
        assert a.columns == b.columns and np.array_equal(a.steps, b.steps)
        assert (a.labels, a.steps_run) == (b.labels, b.steps_run)
        assert a.agent["probe_status"] == b.agent["probe_status"]
        assert {a.agent["probe_status"][name] for name in BATCHED} == {"ok"}
        for j, column in enumerate(a.columns):
            old, new = a.values[:, j], b.values[:, j]
            if column == "agent_overhead_ratio":  # a timing
                continue
            if column in CIRCUIT:
                assert new == pytest.approx(old, rel=1e-4, nan_ok=True), column
            elif column in ACCURACIES:
                assert np.nanmax(np.abs(new - old)) <= 1 / 50, column  # one row of the smallest set
            else:
                assert np.array_equal(old, new, equal_nan=True), column
        for column in (*CIRCUIT, *ACCURACIES):
            assert np.isfinite(b.values[:, b.columns.index(column)]).any(), column


def test_the_agents_keep_their_probes_by_name_period_and_options() -> None:
    from grokwatch import Agent

    seen: list[Agent] = []
    import trainer.stacked as stacked

    original = stacked._member

    def spy(t: RunTask, device: Any) -> Any:
        member, rest = original(t, device)
        seen.append(member.agent)
        return member, rest

    tasks = [task("perm", **c) for c in CASES["perm"]]
    stacked._member = spy  # type: ignore[assignment]
    try:
        train_stack(tasks)
    finally:
        stacked._member = original  # type: ignore[assignment]
    for agent in seen:
        stand_ins = [p for p in agent.probes if isinstance(p, StackedProbe)]
        assert sorted(p.name for p in stand_ins) == sorted(BATCHED)
        assert {p.name: p.period for p in stand_ins}["dropout_robustness"] == 10
        assert agent.meta["probes"] == [p.name for p in agent.probes]


def test_longest_first_starts_the_costliest_stacks_first_with_the_same_stacks() -> None:
    tasks = [task("perm", n=4, d_emb=16, seed=s, steps=100 * (s + 1)) for s in range(5)]
    tasks += [task("transformer", p=23, d_model=16, n_heads=2, d_mlp=32, seed=s, steps=100)
              for s in range(3)]  # fmt: skip
    turns = plan_stacks(tasks, 2)
    longest = plan_stacks(tasks, 2, order="longest")
    assert sorted(map(repr, turns)) == sorted(map(repr, longest))  # the same stacks
    costs = [stack_cost(s) for s in longest]
    assert costs == sorted(costs, reverse=True)
    assert longest[0][0].family == "transformer"  # 4x a perm step, 2 x 100 steps
    with pytest.raises(ValueError, match="order must be one of"):
        plan_stacks(tasks, 2, order="shortest")
