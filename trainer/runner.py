"""The unit of work of a sweep: train one run with the real grokwatch agent attached.

`run_one(task) -> RunResult` is a top-level function of picklable data, so any
`concurrent.futures`-style executor can run it (`trainer.executors`); the stacked path
(`trainer.stacked.run_stack`) returns the same `RunResult` for each run of a stack.

Each run is trained with `grokwatch.Agent` (every built-in probe, `every` steps apart, no
store: `history` is read back at the end), so the corpus holds exactly the measures users'
agents compute. Once the run has generalized (t_grok) its label can no longer change within
the budget, so the run is stopped `max(tail · t_grok, tail_min)` steps later: enough of the
curve after the jump for a forecaster to see it, without paying for a flat line to the budget.
"""

from __future__ import annotations

import dataclasses
import platform
import time
import traceback
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from grokwatch import Action, Agent, Decision, Limits, ModelIO, Reason
from trainer.families import FAMILIES, loss_of
from trainer.spec import RunTask


@dataclasses.dataclass
class RunResult:
    """What `run_one` sends back to the process that writes the corpus."""

    task: RunTask
    status: str  # "ok" or "failed"
    error: str = ""
    steps: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    columns: tuple[str, ...] = ()
    values: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0), np.float32))
    labels: dict[str, Any] = dataclasses.field(default_factory=dict)
    steps_run: int = 0
    wall_time: float = 0.0
    agent: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Stacked runs: the rows their stack padded the training sets to (it sets their rounding).
    padded_rows: int | None = None

    def meta(self) -> dict[str, Any]:
        t = self.task
        padding = {} if self.padded_rows is None else {"padded_rows": self.padded_rows}
        return {
            "run_id": t.run_id,
            "spec": t.spec,
            "family": t.family,
            "split": t.split,
            "status": self.status,
            "error": self.error,
            "config": t.config,
            "every": t.every,
            "max_samples": t.max_samples,
            "tail": t.tail,
            "tail_min": t.tail_min,
            "labels": self.labels,
            "steps_run": self.steps_run,
            "wall_time": self.wall_time,
            "agent": self.agent,
            "versions": {"torch": torch.__version__, "python": platform.python_version()},
            **padding,
        }


class StopAfterGeneralization:
    """Wraps a `grokwatch.Agent` for the trainer's loop: the agent observes and decides as
    usual; this wrapper only adds "stop, the label is settled" once the run generalized."""

    def __init__(self, agent: Agent, *, tail: float, tail_min: int) -> None:
        self.agent, self.tail, self.tail_min = agent, tail, tail_min

    def step(self, step: int, *, loss: torch.Tensor) -> Decision:
        decision = self.agent.step(step, loss=loss)
        if settled(self.agent, step, tail=self.tail, tail_min=self.tail_min):
            message = f"generalized at step {self.agent.events.t_grok}: the label is settled"
            return dataclasses.replace(
                decision, action=Action.STOP, reason=Reason.FINISHED, message=message
            )
        return decision

    def close(self) -> None:
        self.agent.close()


def settled(agent: Agent, step: int, *, tail: float, tail_min: int) -> bool:
    """Has the run generalized long enough ago that its label is final? Only true on an
    evaluation step, so the step the run stops at is recorded."""
    t_grok = agent.events.t_grok
    if t_grok is None or step % agent.every:
        return False
    return bool(step >= t_grok + max(tail * t_grok, tail_min))


def run_one(task: RunTask) -> RunResult:
    """Train one run with the grokwatch agent attached; never raises (errors are recorded)."""
    started = time.perf_counter()
    threads = torch.get_num_threads()
    if task.threads is not None:
        torch.set_num_threads(task.threads)  # one per worker: parallelism comes from processes
    holder: dict[str, Any] = {}
    try:
        family = FAMILIES[task.family]
        config = family.config_cls.from_dict(dict(task.config))

        def factory(model: torch.nn.Module, data: Any, cfg: Any) -> StopAfterGeneralization:
            agent = Agent(
                model,
                train=(data.train_x, data.train_y),
                test=(data.test_x, data.test_y),
                every=task.every,
                run_id=task.run_id,
                config=task.config,
                budget=task.budget,
                transport=None,  # nothing on disk: the history is read back below
                modulus=family.modulus(cfg),
                io=ModelIO(loss_fn=loss_of(cfg)),
                limits=Limits(max_samples=task.max_samples),
            )
            holder["agent"] = agent
            return StopAfterGeneralization(agent, tail=task.tail, tail_min=task.tail_min)

        family.check(config)
        result = family.train(config, agent_factory=factory)
        return finished(task, holder["agent"], int(result.steps), time.perf_counter() - started)
    except Exception as exc:
        return failed(task, exc, time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)


def finished(
    task: RunTask, agent: Agent, steps_run: int, wall_time: float, padded_rows: int | None = None
) -> RunResult:
    """The result of a run whose agent is closed: its history, labels and health counters."""
    steps, columns, values = history_arrays(agent.history)
    summary = agent.summary()
    labels = {k: summary[k] for k in ("outcome", "t_mem", "t_grok", "gap", "sharpness")}
    labels["budget"] = task.budget
    return RunResult(
        task=task,
        status="ok",
        steps=steps,
        columns=columns,
        values=values,
        labels=labels,
        steps_run=steps_run,
        wall_time=wall_time,
        agent={
            "errors": summary["agent_errors"],
            "last_error": summary["agent_last_error"],
            "measure_seconds": summary["measure_seconds"],
            "probe_status": summary["probe_status"],
        },
        padded_rows=padded_rows,
    )


def failed(task: RunTask, exc: BaseException, wall_time: float) -> RunResult:
    return RunResult(
        task=task,
        status="failed",
        error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}",
        wall_time=wall_time,
    )


def history_arrays(
    history: Iterable[tuple[int, dict[str, float]]],
) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    """Agent history → steps `(T,)`, sorted column names `(M,)`, values `(T, M)` float32 with
    NaN where a measure is missing, not finite, or beyond float32's range (the corpus's NaN
    policy)."""
    points = list(history)
    columns = tuple(sorted({k for _, v in points for k in v}))
    index = {c: j for j, c in enumerate(columns)}
    wide = np.full((len(points), len(columns)), np.nan)
    for i, (_, v) in enumerate(points):
        for key, x in v.items():
            wide[i, index[key]] = x
    with np.errstate(over="ignore"):
        values = wide.astype(np.float32)  # a finite float64 beyond 3.4e38 becomes inf here
    values[~np.isfinite(values)] = np.nan
    steps = np.array([s for s, _ in points], dtype=np.int64)
    return steps, columns, values
