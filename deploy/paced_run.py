"""A demonstration run for the alerting stack: a real training run that groks, reporting to a
detector service through the agent, paced so that Prometheus sees it as a real run.

    GROKWATCH_DETECTOR=http://127.0.0.1:8321 python deploy/paced_run.py --pace 60
    python deploy/paced_run.py --detector http://127.0.0.1:8321 --wd 0 --pace-always --policy

The recipe is RESEARCH §3's p = 53, train fraction 0.5, lr 3e-3, weight decay 1, seed 2 (it
groks at step 1200, and the shipped forecaster alerts at steps 1000 and 1100; ``--wd 0``
memorizes and never groks). It evaluates every 100 steps in well under a second; real runs
evaluate minutes apart, so the run pauses ``--pace`` seconds after each evaluation until its
test accuracy reaches 0.9 (``--pace-always``: after every evaluation). With Prometheus' 15 s
scrapes and rule evaluations and the 1 min ``for`` of GrokkingPredicted, the alert must stay
up for up to 90 s: two alerting evaluations paced 60 s apart give it 120 s, so it fires
before the run groks.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

RECIPE = {"p": 53, "frac": 0.5, "lr": 3e-3, "eval_every": 100, "threads": 1}


def paced_run(
    run_id: str,
    *,
    detector: str,
    wd: float = 1.0,
    steps: int = 3000,
    pace: float = 30.0,
    pace_always: bool = False,
    labels: Mapping[str, str] | None = None,
    seed: int = 2,
    policy: Any = None,
    on_eval: Callable[[int], None] | None = None,
) -> Any:
    """Train the recipe with an agent reporting to ``detector``; returns the trainer's result
    (``t_grok``: first evaluation with test accuracy >= 0.9, or None). ``on_eval(step)`` is
    called after each evaluation, before the pause. ``policy``: a ``grokwatch.RunPolicy`` to
    opt in to stop/extend advice (the loop follows it: a hopeless run stops early)."""
    from grokwatch import Agent
    from trainer.config import RunConfig
    from trainer.train import EvalRecord, train

    config = RunConfig(**RECIPE, wd=wd, steps=steps, seed=seed)

    def factory(model: Any, data: Any, cfg: RunConfig) -> Agent:
        return Agent(
            model,
            train=(data.train_x, data.train_y),
            test=(data.test_x, data.test_y),
            every=cfg.eval_every,
            run_id=run_id,
            config=cfg.to_dict(),
            budget=cfg.steps,
            labels=dict(labels or {}),
            transport=detector,
            modulus=cfg.p,
            policy=policy,
        )

    def paced(record: EvalRecord) -> None:
        if on_eval is not None:
            on_eval(record.step)
        if pace_always or record.test_acc < 0.9:
            time.sleep(pace)

    return train(config, agent_factory=factory, callback=paced)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default=os.environ.get("GROKWATCH_DETECTOR"))
    parser.add_argument("--run-id", default=f"demo-{int(time.time())}")
    parser.add_argument("--wd", type=float, default=1.0, help="weight decay (0: memorizes)")
    parser.add_argument("--steps", type=int, default=3000, help="steps, also the budget")
    parser.add_argument("--pace", type=float, default=60.0, help="seconds after an evaluation")
    parser.add_argument("--pace-always", action="store_true")
    parser.add_argument("--experiment", default="demo")
    parser.add_argument("--team", default="ml")
    parser.add_argument("--policy", action="store_true", help="opt in to stop/extend advice")
    args = parser.parse_args(argv)
    if not args.detector:
        parser.error("give --detector URL or set GROKWATCH_DETECTOR")
    from grokwatch import RunPolicy

    result = paced_run(
        args.run_id,
        detector=args.detector,
        wd=args.wd,
        steps=args.steps,
        pace=args.pace,
        pace_always=args.pace_always,
        labels={"experiment": args.experiment, "team": args.team},
        policy=RunPolicy() if args.policy else None,
        on_eval=lambda step: print(f"{args.run_id}: step {step}", flush=True),
    )
    print(f"{args.run_id}: t_grok {result.t_grok}, {result.steps} steps")


if __name__ == "__main__":
    main()
