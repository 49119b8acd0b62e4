"""``grokwatch demo``: a modular-addition run that memorizes, then groks, on one core.

The run uses the reference trainer (``trainer/``) with the agent attached and shows a live
progress bar. It records the agent's decision at every evaluation, then prints the events and
the forecast timeline (the first alert against ``t_grok``) and writes ``events.json`` (with the
forecast history and the change points) and ``report.png`` to ``--out``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from grokwatch.agent import Agent
from grokwatch.decision import Decision
from grokwatch.policy import RunPolicy
from grokwatch.report import write_report
from grokwatch.timeline import Timeline, alert_threshold, describe, entry, write_json

DEMO = {
    "p": 53,
    "op": "add",
    "frac": 0.5,
    "lr": 1e-3,
    "wd": 1.0,
    "steps": 6000,
    "seed": 0,
    "eval_every": 100,
}


class _ProgressAgent:
    """The agent as the trainer sees it, plus a live progress bar (observes only)."""

    def __init__(self, agent: Agent, bar: Any) -> None:
        self.agent = agent
        self.bar = bar
        self._shown = -1
        self.decisions: list[dict[str, Any]] = []
        """The agent's decision at each evaluation, as :func:`grokwatch.timeline.entry`."""

    def step(self, step: int, **kwargs: Any) -> Decision:
        decision = self.agent.step(step, **kwargs)
        if decision.step == step and (not self.decisions or self.decisions[-1]["step"] < step):
            self.decisions.append(entry(decision))
        self.bar.update(1)
        if self.agent.history and self.agent.history[-1][0] != self._shown:
            self._shown, values = self.agent.history[-1]
            self.bar.set_postfix(
                train=f"{values.get('train_accuracy', float('nan')):.3f}",
                test=f"{values.get('test_accuracy', float('nan')):.3f}",
                phase=self.agent.phase.value,
                refresh=False,
            )
        return decision

    def close(self) -> None:
        self.agent.close()


def run_demo(
    out: str | Path,
    *,
    steps: int | None = None,
    metrics_port: int | None = None,
    db: str | Path | None = None,
    threads: int | None = 1,
    quiet: bool = False,
    overrides: dict[str, Any] | None = None,
    policy: RunPolicy | None = None,
) -> dict[str, Any]:
    """Train the demo run and write its outputs; returns the ``events.json`` content.

    ``policy`` opts in to run control: the run stops when the policy advises it (once it has
    generalized, with the default :class:`~grokwatch.policy.RunPolicy`)."""
    from tqdm import tqdm

    from trainer.config import RunConfig
    from trainer.train import train

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = dict(DEMO, **(overrides or {}))
    if steps is not None:
        spec["steps"] = steps
    config = RunConfig(**spec)
    config.save(out_dir / "config.json")
    if threads:
        torch.set_num_threads(threads)
    database = Path(db) if db is not None else out_dir / "runs.db"
    watched: list[_ProgressAgent] = []
    stop_metrics: Callable[[], None] | None = None
    bar = tqdm(total=config.steps, desc="grokwatch demo", unit="step", disable=quiet)

    def factory(model: torch.nn.Module, data: Any, cfg: Any) -> _ProgressAgent:
        agent = Agent(
            model,
            train=(data.train_x, data.train_y),
            test=(data.test_x, data.test_y),
            every=cfg.eval_every,
            run_id=f"demo-{int(time.time())}",
            config=cfg.to_dict(),
            budget=cfg.steps,
            transport=database,
            modulus=cfg.p,
            policy=policy,
        )
        watched.append(_ProgressAgent(agent, bar))
        return watched[0]

    if metrics_port is not None:
        from grokwatch.metrics import serve_agent_metrics

        stop_metrics = serve_agent_metrics(
            lambda: [w.agent for w in watched[:1]], port=metrics_port
        )
    try:
        result = train(config, agent_factory=factory)
    finally:
        bar.close()
        if stop_metrics is not None:
            stop_metrics()
    agent = watched[0].agent
    summary = agent.summary()
    timeline = Timeline(
        entries=watched[0].decisions,
        change_points=list(agent.detector.change_points),
        summary=agent.detector.summary(),
        alert_threshold=alert_threshold(agent.detector.forecaster),
    )
    sharpness = summary["sharpness"]
    events = {
        "run_id": agent.run_id,
        "t_mem": summary["t_mem"],
        "t_grok": summary["t_grok"],
        "gap": summary["gap"],
        "sharpness": None if sharpness is None else round(float(sharpness), 4),
        "outcome": summary["outcome"],
        "budget": config.steps,
        "phase": summary["phase"],
        "wall_seconds": result.wall_time,
        "steps_run": result.steps,
        "db": str(database),
        "policy": None if policy is None else policy.to_json(),
        "config": config.to_dict(),
        "agent": {k: summary[k] for k in ("evaluations", "agent_errors", "measure_seconds")},
        **timeline.to_json(),
    }
    write_json(out_dir / "events.json", events)
    write_report(agent.run_data(), out_dir / "report.png", timeline=timeline)
    return events


def print_outcome(events: dict[str, Any], out: Path) -> None:
    """Print the demo's outcome, its events and its forecast timeline (from ``events.json``)."""
    from grokwatch.decision import ChangePoint, ChangePointMethod, Direction

    points = [
        ChangePoint(**dict(c, direction=Direction(c["direction"]),
                           method=ChangePointMethod(c["method"])))
        for c in events["change_points"]
    ]  # fmt: skip
    timeline = Timeline(
        entries=events["forecasts"],
        change_points=points,
        summary={k: events[k] for k in ("t_mem", "t_grok", "gap", "sharpness", "phase",
                                        "outcome", "budget")},
        alert_threshold=events["alert_threshold"],
    )  # fmt: skip
    print(f"run {events['run_id']}: outcome {events['outcome']}")
    print("\n".join(describe(timeline)))
    stops = [e for e in timeline.actions() if e["action"] == "stop"]
    if stops:
        print(f"the run policy stopped the run at step {stops[0]['step']} ({stops[0]['reason']})")
    db = events.get("db") or out / "runs.db"
    print(f"wrote {out / 'events.json'} and {out / 'report.png'}; the run is in {db}")
