"""The agent's cadence and overhead cap: grid steps, call-rate independence, the cap itself."""

from __future__ import annotations

import itertools
import logging
import math

import numpy as np
import pytest
import torch
from _models import TinyMLP, addition_data

from grokwatch import Agent, ConfigError, Limits, Probe
from grokwatch.agent import MAX_CONSECUTIVE_FAILURES
from grokwatch.probes import resolve
from grokwatch.schedule import (
    CALIBRATION_ROWS,
    UNTIMED_SHARE,
    Schedule,
    grid_count,
    grid_spacing,
    planned_steps,
)


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
    """A probe whose cost on the fake clock is ``fixed + per_row * rows``."""

    def __init__(self, name: str, fixed: float, per_row: float = 0.0) -> None:
        self.name = name  # type: ignore[misc]
        self.fixed = fixed
        self.per_row = per_row

    def seconds(self, rows: int) -> float:
        return self.fixed + self.per_row * rows

    def compute(self, ctx):
        return {}


#: An MLP-like cost profile (seconds; 1404 rows per probe set, 3 ms training steps).
ROWS = 1404
MLP_LIKE = {
    "loss_accuracy": (3e-4, 1.6e-6),  # ~2.5 ms on all rows: the reference
    "weight_norm": (6e-5, 0.0),
    "grad_weight_cosine": (1.8e-4, 0.0),
    "weight_entropy": (3.6e-4, 0.0),
    "spectral_entropy": (3e-3, 1e-6),
    "mc_dropout": (7e-4, 1.2e-5),
    "dropout_robustness": (1e-3, 4.5e-5),  # ~64 ms on all rows: 21 training steps
}


def simulate(
    overhead: float | None,
    steps: int,
    step_seconds: float,
    costs: dict[str, tuple[float, float]],
    *,
    budget: int | None = None,
    every: int | None = None,
    call_seconds: float = 5e-6,
    evaluation_seconds: float = 5e-4,
    warm_up: float = 0.0,
):
    """A loop on a fake clock, driving the schedule as the agent does.

    Each step costs ``step_seconds``, each call ``call_seconds``, each evaluation
    ``evaluation_seconds`` beyond its probes, the first evaluation ``warm_up`` more. Returns the
    schedule, each probe's runs on all rows, the calibrated probes and the evaluated steps.
    """
    clock = FakeClock()
    schedule = Schedule(every, overhead, None, budget=budget, clock=clock)
    probes = [Costly(name, *cost) for name, cost in costs.items()]
    runs = dict.fromkeys(costs, 0)
    calibrated: list[str] = []
    evaluated: list[int] = []
    for step in range(steps):
        clock.now += step_seconds  # the training step
        entered = schedule.enter()
        clock.now += call_seconds
        if step >= schedule.next_due:
            schedule.next_due = schedule.after(step)
            plan = schedule.plan(probes, step, False, entered)
            if plan is None:
                schedule.skipped += 1
            else:
                if plan.calibrate is not None:
                    probe = plan.calibrate
                    timings = [(n, probe.seconds(n)) for n in CALIBRATION_ROWS]
                    seconds = sum(t for _, t in timings)
                    clock.now += seconds
                    schedule.calibrated(probe, timings, ROWS, seconds, one_off=plan.first)
                    calibrated.append(probe.name)
                for probe in plan.probes:
                    seconds = probe.seconds(ROWS) + (warm_up if plan.first else 0.0)
                    clock.now += seconds
                    schedule.ran(probe, seconds, step, account=plan.account(probe))
                    runs[probe.name] += 1
                clock.now += evaluation_seconds
                schedule.evaluated(evaluation_seconds, first=plan.first)
                evaluated.append(step)
        schedule.leave(entered)
    return schedule, runs, calibrated, evaluated


def test_grid_count_counts_the_grid_steps():
    for every in (None, 7, 100):
        schedule, seen, step = Schedule(every, None, None), [], 0
        while step <= 25_000:
            seen.append(step)
            step = schedule.after(step)
        for first, last in [(0, 0), (0, 999), (5, 1234), (990, 10_000), (1000, 25_000), (30, 20)]:
            expected = len([s for s in seen if first <= s <= last])
            assert grid_count(first, last, every) == expected, (every, first, last)


def test_the_cap_holds_at_the_end_of_a_budgeted_run_and_pays_for_the_core():
    schedule, runs, calibrated, evaluated = simulate(0.01, 3000, 0.003, MLP_LIKE, budget=3000)
    aimed = 0.01 * (1 - UNTIMED_SHARE)  # the cap less the margin for what it cannot time
    assert 0.9 * aimed <= schedule.ratio() <= aimed * 1.02
    # what the core's budget pays for: 90 % of the aimed share of 9 s, less the calls (5 us
    # each) and the one-off first evaluation, at ~3.2 ms an evaluation (reference, weight norm,
    # gradient cosine, the evaluation's own work)
    core = 0.9 * 0.01 * (1 - UNTIMED_SHARE) * 9.0 - 3000 * 5e-6 - schedule.one_off
    per_evaluation = schedule.eval_cost + schedule.predicted(schedule._core)
    assert runs["loss_accuracy"] == len(evaluated) >= 0.9 * core / per_evaluation >= 10
    # dense early, sparser later: the grid's shape, thinned
    early = [s for s in evaluated if s < 1000]
    assert len(early) >= 3 * (len(evaluated) - len(early))
    assert max(b - a for a, b in itertools.pairwise(early)) <= 100
    # the cheap probes are timed on a few rows, then join the core at (nearly) every evaluation
    assert {"weight_norm", "grad_weight_cosine"} <= set(calibrated)
    assert runs["weight_norm"] >= len(evaluated) - 5
    # the 64 ms probe costs more than this run's whole extra budget: timed, never run on all rows
    assert runs["dropout_robustness"] == 0


def test_one_off_costs_are_counted_without_starving_the_schedule():
    plain = simulate(0.01, 3000, 0.003, MLP_LIKE, budget=3000)
    warm = simulate(0.01, 3000, 0.003, MLP_LIKE, budget=3000, warm_up=0.01)
    schedule, _, _, evaluated = warm
    reference = Costly("loss_accuracy", *MLP_LIKE["loss_accuracy"])
    first = reference.seconds(8) + reference.seconds(64) + reference.seconds(ROWS) + 0.01 + 5e-4
    assert schedule.one_off == pytest.approx(first)
    assert schedule.ratio() <= 0.01  # counted: the share still holds
    # the next evaluations are not held up until the warm-up is paid back
    assert evaluated[1] <= 2 * plain[3][1]
    # and cost what they cost: here a quarter of the core's budget, so about a quarter fewer
    assert 0.6 * len(plain[3]) <= len(evaluated) < len(plain[3])


def test_expensive_probes_run_rarely_and_cheap_ones_often_on_a_long_run():
    schedule, runs, calibrated, evaluated = simulate(0.01, 50_000, 0.003, MLP_LIKE, budget=50_000)
    assert schedule.ratio() <= 0.01
    assert sorted(calibrated) == sorted(MLP_LIKE)  # every probe timed on a few rows first
    assert runs["loss_accuracy"] == len(evaluated) >= 100
    assert runs["weight_norm"] >= len(evaluated) - 5
    assert 0 < runs["mc_dropout"] < runs["spectral_entropy"] < runs["weight_entropy"]
    # each extra probe gets a comparable share of time, so the cheap one runs far more often
    assert runs["weight_entropy"] >= 3 * runs["mc_dropout"]


def test_without_a_budget_the_cap_holds_from_step_1000_on():
    for steps in (1000, 2000, 5000):
        schedule, *_ = simulate(0.01, steps, 0.003, MLP_LIKE)
        # over by at most one calibration of a probe on a few rows
        assert schedule.ratio() <= 0.01 + 2 * 3.1e-3 / (steps * 0.003), steps


def test_without_a_cap_every_grid_step_is_evaluated():
    schedule, runs, calibrated, evaluated = simulate(None, 2000, 0.005, MLP_LIKE)
    assert len(evaluated) == schedule.evaluations == 100 + 10
    assert all(n == len(evaluated) for n in runs.values()) and not calibrated


def test_a_fixed_cadence_under_a_cap_evaluates_its_own_multiples():
    _, _, _, evaluated = simulate(0.01, 3000, 0.003, MLP_LIKE, budget=3000, every=50)
    assert all(s % 50 == 0 for s in evaluated) and len(evaluated) >= 12


def test_calibration_extrapolates_from_two_sizes():
    schedule = Schedule(None, 0.01, None)
    probe = Costly("p", 0.0)
    schedule.calibrated(probe, [(8, 0.001), (64, 0.002)], 1408, 0.003)
    assert schedule.cost["p"] == pytest.approx(0.002 + 0.001 / 56 * (1408 - 64))
    assert schedule.extra_spent == 0.003 and "p" not in schedule.measured
    schedule.ran(probe, 0.05, 10, account="extra")  # the first run on all rows replaces it
    assert schedule.cost["p"] == 0.05 and "p" in schedule.measured


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


def test_the_agent_runs_the_plan_and_charges_each_account():
    """A real agent with the schedule's clock faked: probes advance it by their cost."""
    clock = FakeClock()

    class Timed(Probe):
        def __init__(self, name: str, seconds: float) -> None:
            self.name = name  # type: ignore[misc]
            self.seconds = seconds

        def compute(self, ctx):
            clock.now += self.seconds * (0.05 + 0.95 * len(ctx.train[1]) / len(xtr))
            return {self.name: 1.0}

    (xtr, ytr), (xte, yte) = addition_data(53)  # 1404 rows each
    probes = [Timed("loss_accuracy", 0.002), Timed("cheap", 1e-5), Timed("costly", 0.05)]
    agent = Agent(
        TinyMLP(53), train=(xtr, ytr), test=(xte, yte), probes=probes, transport=None, budget=3000
    )
    agent._schedule.clock = agent._clock = clock
    for step in range(3000):
        clock.now += 0.003
        agent.step(step)
    agent.close()
    schedule = agent._schedule
    assert agent.errors == 0 and schedule.ratio() <= 0.01
    assert agent.evaluations == agent.probe_runs["loss_accuracy"] >= 20
    assert agent.probe_runs["cheap"] >= agent.evaluations - 3  # joined the core once timed
    assert agent.probe_runs.get("costly", 0) == 0  # timed on a few rows: too dear for this run
    assert "costly" in schedule.cost and "costly" not in schedule.measured
    assert schedule.one_off >= 0.002
    assert agent.summary()["agent_one_off_seconds"] == schedule.one_off
    history = dict(agent.history)
    assert all("loss_accuracy" in values for values in history.values())
    assert all(values["agent_overhead_ratio"] <= 0.05 for values in history.values())


@pytest.mark.parametrize("calls_every", [1, 100])
def test_the_spill_over_of_an_evaluation_is_charged_to_the_agent(calls_every):
    """The step after an evaluation runs 1 ms slower (caches the evaluation left cold): the
    agent charges it to its own time when the loop calls at consecutive steps, and the cap holds
    over the loop's wall time with it."""
    clock = FakeClock()
    (xtr, ytr), (xte, yte) = addition_data(53)
    agent = Agent(
        TinyMLP(53), train=(xtr, ytr), test=(xte, yte), probes=["loss_accuracy"], transport=None
    )
    agent._schedule.clock = agent._clock = clock
    evaluated: set[int] = set()
    for step in range(0, 3000, calls_every):
        clock.now += 0.003 * calls_every + (0.001 if step - calls_every in evaluated else 0.0)
        before = agent.evaluations
        agent.step(step)
        if agent.evaluations > before:
            evaluated.add(step)
    schedule = agent._schedule
    if calls_every == 1:
        assert schedule.spills == agent.evaluations - 1 >= 5  # the first one's is one-off
        assert schedule.spill_cost == pytest.approx(0.001)
        predicted = schedule.eval_cost + schedule.predicted(schedule._core) + 0.001
        assert schedule.evaluation_cost(schedule._core) == pytest.approx(predicted)
        assert schedule.total() >= 0.00099 * (agent.evaluations - 1)  # in the agent's own share
        assert schedule.ratio() <= 0.01
    else:  # a step's spill-over cannot be told from 100 steps' noise: nothing is charged
        assert schedule.spills == 0 and schedule.spill_cost == 0.0
        assert agent.evaluations >= 5


def test_the_fast_path_records_every_step_the_full_path_would():
    """Calls that only record the loss take the fast path; odd steps, repeats and numpy steps
    the full one: the recorded losses are the same."""
    (xtr, ytr), (xte, yte) = addition_data(53)
    agent = Agent(TinyMLP(53), train=(xtr, ytr), test=(xte, yte), transport=None, every=50)
    steps = [0, 1, np.int64(2), 2.0, 3, 3, 1, 5, 50, 51]
    for step in steps:
        agent.step(step, loss=torch.tensor(float(step)))
    agent.step(52, loss=1.5)
    agent.step(53, loss=torch.tensor([1.0, 2.0]))  # not a scalar: an error, counted
    assert agent.ignored_steps == 3  # 2.0, the second 3, and 1
    assert agent.errors == 1
    agent.step(100, loss=0.0)
    assert list(agent._loss_steps) == [0, 1, 2, 3, 5, 50, 51, 52, 100]
    assert list(agent._loss_values) == [0.0, 1.0, 2.0, 3.0, 5.0, 50.0, 51.0, 1.5, 0.0]
    agent.close()
    agent.step(101, loss=1.0)  # after close: ignored, never raises
    assert agent._last_step == 100


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


def test_planned_steps_replays_the_capped_schedule_in_training_steps():
    steps = planned_steps(3000, 1.0)
    assert steps[0] == 0 and len(steps) >= 20
    assert all(s % grid_spacing(s) == 0 for s in steps)  # on the grid
    assert len([s for s in steps if s < 1000]) > len([s for s in steps if s >= 1000])
    assert len(planned_steps(3000, 2.0)) < len(steps)  # dearer evaluations, fewer of them
    assert len(planned_steps(3000, 1.0, one_off=7.0)) < len(steps)  # one-off costs count
    assert len(planned_steps(2000, 1.0, overhead=None)) == 100 + 10 + 1  # every grid step
    assert planned_steps(1000, 1.0, every=50, overhead=None) == list(range(0, 1001, 50))
    with pytest.raises(ConfigError, match="evaluation_cost"):
        planned_steps(3000, float("nan"))
