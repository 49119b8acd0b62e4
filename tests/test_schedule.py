"""The agent's cadence and overhead cap: grid steps, call-rate independence, the cap itself."""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import pytest
import torch
from _models import TinyMLP, addition_data

from grokwatch import Agent, ConfigError, Limits, Probe
from grokwatch.agent import MAX_CONSECUTIVE_FAILURES
from grokwatch.probes import resolve
from grokwatch.schedule import Schedule, grid_spacing


def test_grid_is_dense_early_and_log_spaced_later():
    assert [grid_spacing(s) for s in (0, 999, 1000, 9999, 10_000, 123_456)] == [
        10,
        10,
        100,
        100,
        1000,
        10_000,
    ]
    schedule = Schedule(None, None, None)
    steps, step = [], 0
    while step < 20_000:
        steps.append(step)
        step = schedule.after(step)
    assert steps[:3] == [0, 10, 20]
    assert len([s for s in steps if s < 1000]) == 100
    assert len([s for s in steps if 1000 <= s < 10_000]) == 90
    assert len([s for s in steps if s >= 10_000]) == 10
    assert Schedule(250, None, None).after(600) == 750


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Costly(Probe):
    """A probe whose cost is set on the fake clock."""

    def __init__(self, name: str, seconds: float, clock: FakeClock) -> None:
        self.name = name  # type: ignore[misc]
        self.seconds = seconds
        self.clock = clock

    def compute(self, ctx):
        return {}


def simulate(overhead: float, steps: int, step_seconds: float, costs: dict[str, float]):
    """A loop on a fake clock: each step costs ``step_seconds``, each probe its own cost."""
    clock = FakeClock()
    schedule = Schedule(None, overhead, None, clock=clock)
    probes = [Costly(n, c, clock) for n, c in costs.items()]
    runs = dict.fromkeys(costs, 0)
    for step in range(steps):
        clock.now += step_seconds  # the training step
        entered = schedule.enter()
        if step >= schedule.next_due:
            schedule.next_due = schedule.after(step)
            if schedule.allows(probes, entered):
                for probe in schedule.plan(probes, step, False):
                    clock.now += probe.seconds
                    schedule.ran(probe, probe.seconds, step)
                    runs[probe.name] += 1
                schedule.evaluations += 1
        schedule.leave(entered)
    return schedule, runs


def test_the_cap_holds_and_expensive_probes_run_less_often():
    costs = {"loss_accuracy": 0.004, "cheap": 0.001, "mc_dropout": 0.02, "robustness": 0.2}
    schedule, runs = simulate(0.01, 20_000, 0.005, costs)
    # over the cap by at most one evaluation's cost, paid back before the next evaluation
    assert schedule.ratio() <= 0.01 + max(costs.values()) / (20_000 * 0.005)
    assert schedule.ratio() > 0.005  # and most of the budget is used
    # the core probes run at every evaluation (an untimed probe joins one evaluation later)
    assert runs["loss_accuracy"] == schedule.evaluations == runs["cheap"] + 1
    # no probe takes more time than the shared forward pass (loss_accuracy), give or take one run
    for name in ("mc_dropout", "robustness"):
        assert (
            runs[name] * costs[name] <= runs["loss_accuracy"] * costs["loss_accuracy"] + costs[name]
        )
    assert runs["robustness"] < runs["mc_dropout"] < runs["loss_accuracy"]


def test_without_a_cap_every_grid_step_is_evaluated():
    schedule, _ = simulate(1.0, 2000, 0.005, {"loss_accuracy": 0.0})
    assert schedule.evaluations == 100 + 10


def seeded_run(steps: int, call_every: int):
    """The same seeded run; the loop calls the agent every ``call_every`` steps."""
    torch.manual_seed(0)
    (xtr, ytr), (xte, yte) = addition_data()
    model = TinyMLP()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1.0, betas=(0.9, 0.98))
    agent = Agent(
        model, train=(xtr, ytr), test=(xte, yte), transport=None, overhead=None, modulus=11
    )
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(xtr), ytr)
        loss.backward()
        opt.step()
        if step % call_every == 0:
            agent.step(step, loss=loss)
    agent.close()
    return agent


def test_measures_do_not_depend_on_how_often_the_loop_calls():
    dense = seeded_run(401, 1)
    sparse = seeded_run(401, 100)
    dense_points, sparse_points = dict(dense.history), dict(sparse.history)
    assert sorted(sparse_points) == [0, 100, 200, 300, 400]
    assert set(sparse_points) <= set(dense_points)
    window = {"loss_spectral_energy", "loss_hjorth_mobility"}
    for step, values in sparse_points.items():
        mine = {k: v for k, v in values.items() if not k.startswith("agent_")}
        theirs = {k: v for k, v in dense_points[step].items() if not k.startswith("agent_")}
        assert set(theirs) - set(mine) == (window if step else set()), step
        for key, value in mine.items():
            assert value == theirs[key] or (math.isnan(value) and math.isnan(theirs[key])), key
    # the loss window is in steps: one loss in the last 100 steps is not enough for the probe
    assert sparse.statuses["loss_spectral_energy"].status == "not_applicable"
    assert "in the last 100 steps, got 1" in sparse.statuses["loss_spectral_energy"].reason
    assert (
        "dropout_robustness_auc" in sparse_points[0]
        and "dropout_robustness_auc" in sparse_points[100]
    )


def test_the_agent_keeps_its_own_share_under_the_cap():
    """A real loop (1 ms steps) with a probe that costs 20 ms: the agent spaces evaluations."""

    class Slow(Probe):
        name = "slow"

        def compute(self, ctx):
            time.sleep(0.02)
            return {"slow": 1.0}

    agent = Agent(TinyMLP(), probes=[Slow()], transport=None, overhead=0.05)
    start = time.perf_counter()
    step = 0
    while time.perf_counter() - start < 2.0:
        time.sleep(0.001)
        agent.step(step)
        step += 1
    assert agent.overhead_ratio <= 0.05 + 0.03 / 2.0
    assert 2 <= agent.evaluations <= 0.05 * 2.0 / 0.02 + 2
    assert agent.summary()["skipped_evaluations"] > 0
    assert agent.history[-1][1]["agent_overhead_ratio"] <= 0.05 + 0.03 / 2.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"budget": 300000.0, "every": np.int64(100)},
        {"budget": np.int32(1000), "every": 1e2, "limits": Limits(max_samples=np.int64(64))},
    ],
)
def test_numbers_as_users_write_them(kwargs):
    (xtr, ytr), _ = addition_data()
    agent = Agent(TinyMLP(), train=(xtr, ytr), transport=None, probes=["loss_accuracy"], **kwargs)
    assert agent.every == 100 and isinstance(agent.every, int) and isinstance(agent.budget, int)
    agent.step(np.int64(0))
    agent.step(100.0)
    assert [s for s, _ in agent.history] == [0, 100] and agent.errors == 0
    with pytest.raises(ConfigError, match="every must be a whole number"):
        Agent(TinyMLP(), every=100.5, transport=None)


class Broken(Probe):
    name = "broken"

    def compute(self, ctx):
        raise RuntimeError("shape '[16, -1]' is invalid")


def test_failing_probe_is_counted_logged_once_exported_and_switched_off(caplog):
    (xtr, ytr), _ = addition_data()
    probes = [Broken(), *resolve(["loss_accuracy"])]
    agent = Agent(TinyMLP(), train=(xtr, ytr), transport=None, every=1, probes=probes)
    with caplog.at_level(logging.WARNING, logger="grokwatch"):
        for step in range(10):
            agent.step(step)
    assert agent.probe_errors["broken"] == MAX_CONSECUTIVE_FAILURES == agent.errors
    assert "broken" in agent.disabled and "invalid" in agent.disabled["broken"]
    tracebacks = [r for r in caplog.records if "Traceback" in r.getMessage()]
    assert len(tracebacks) == 1 and "RuntimeError" in tracebacks[0].getMessage()
    assert any("switched off" in r.getMessage() for r in caplog.records)
    assert agent.history[-1][1]["agent_probe_errors"] == MAX_CONSECUTIVE_FAILURES
    assert len(agent.history) == 10 and "train_accuracy" in agent.history[-1][1]
    summary = agent.summary()
    assert summary["probe_errors"] == {"broken": 3} and "broken" in summary["probes_disabled"]


def test_probes_stay_on_the_grid_whatever_the_first_step():
    (xtr, ytr), _ = addition_data()
    probes = ["loss_accuracy", "weight_norm"]
    agent = Agent(TinyMLP(), train=(xtr, ytr), every=10, transport=None, probes=probes)
    for step in (1, 10, 20):
        agent.step(step)
    assert [s for s, _ in agent.history] == [1, 10, 20]
    assert all("train_accuracy" in v and "weight_norm" in v for _, v in agent.history)
