"""``grokwatch demo``: a seed-000 modular-addition run that memorizes, then groks, on one core.

The run uses the reference trainer (``trainer/``) with the agent attached, shows a live
progress bar, prints the events and writes ``events.json`` and ``report.png`` to ``--out``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from grokwatch.agent import Agent
from grokwatch.decision import Decision
from grokwatch.report import write_report

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

    def step(self, step: int, **kwargs: Any) -> Decision:
        decision = self.agent.step(step, **kwargs)
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
) -> dict[str, Any]:
    """Train the demo run and write its outputs; returns the ``events.json`` content."""
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
    holder: dict[str, Agent] = {}
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
            transport=db if db is not None else out_dir / "runs.db",
            modulus=cfg.p,
        )
        holder["agent"] = agent
        return _ProgressAgent(agent, bar)

    if metrics_port is not None:
        from grokwatch.metrics import serve_agent_metrics

        stop_metrics = serve_agent_metrics(
            lambda: [holder["agent"]] if "agent" in holder else [], port=metrics_port
        )
    try:
        result = train(config, agent_factory=factory)
    finally:
        bar.close()
        if stop_metrics is not None:
            stop_metrics()
    agent = holder["agent"]
    summary = agent.summary()
    events = {
        "run_id": agent.run_id,
        "t_mem": summary["t_mem"],
        "t_grok": summary["t_grok"],
        "gap": summary["gap"],
        "sharpness": summary["sharpness"],
        "outcome": summary["outcome"],
        "budget": config.steps,
        "phase": summary["phase"],
        "wall_seconds": getattr(result, "wall_time", None),
        "config": config.to_dict(),
        "agent": {k: summary[k] for k in ("evaluations", "agent_errors", "measure_seconds")},
    }
    (out_dir / "events.json").write_text(json.dumps(events, indent=2, default=str))
    write_report(agent.run_data(), out_dir / "report.png")
    return events
