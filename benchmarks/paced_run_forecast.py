"""The shipped forecaster on deploy/paced_run.py's recipe: P(grok within budget) at every
evaluation before ``t_grok``, and where it alerts, for a few seeds.

The alerting stack's demo and its end-to-end test (tests/deploy/test_alerting_e2e.py) rely on
the run alerting before it groks; with Prometheus' intervals and a ``for:`` the alert must
stay up for more than one evaluation. This trains the recipe (no pacing, no service: an
in-process agent with the shipped model, as the service's detector forecasts) and reports
each seed's evaluations, so the seed and pace the demo uses are chosen on numbers:

    python -m benchmarks.paced_run_forecast --seeds 0 1 2 \\
        --json benchmarks/results/deploy/paced_run_forecast.json
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

from benchmarks.report_io import write_report
from grokwatch import Agent
from trainer.config import RunConfig
from trainer.train import train

ROOT = Path(__file__).resolve().parents[1]


def recipe() -> dict[str, Any]:
    """deploy/paced_run.py's RECIPE (loaded from the file: deploy is not a package)."""
    spec = importlib.util.spec_from_file_location("paced_run", ROOT / "deploy" / "paced_run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.RECIPE)


def one_seed(seed: int, steps: int = 3000) -> dict[str, Any]:
    config = RunConfig(**recipe(), wd=1.0, steps=steps, seed=seed)
    forecasts: list[tuple[int, float, bool]] = []

    def factory(model: Any, data: Any, cfg: RunConfig) -> Agent:
        agent = Agent(model, train=(data.train_x, data.train_y), test=(data.test_x, data.test_y),
                      every=cfg.eval_every, budget=cfg.steps, transport=None, modulus=cfg.p,
                      config=cfg.to_dict())  # fmt: skip
        step = agent.step

        def recording(at: int, *args: Any, **kwargs: Any) -> Any:
            decision = step(at, *args, **kwargs)
            f = decision.forecast
            if f is not None and decision.step == at:
                forecasts.append((at, float(f.p_grok_budget), bool(f.alert)))
            return decision

        agent.step = recording  # type: ignore[method-assign]
        return agent

    result = train(config, agent_factory=factory)
    t_grok = result.t_grok
    before = [(s, p, a) for s, p, a in forecasts if t_grok is None or s < t_grok]
    return {
        "seed": seed,
        "t_grok": t_grok,
        "alert_steps": [s for s, _, a in before if a],
        "p_before_t_grok": [[s, round(p, 4)] for s, p, _ in before],
    }


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    from grokwatch.forecast.io import load_default

    report: dict[str, Any] = {"alert_threshold": load_default().alert_threshold_, "runs": []}
    for seed in args.seeds:
        run = one_seed(seed)
        report["runs"].append(run)
        print(f"seed {seed}: t_grok {run['t_grok']}, alerts at {run['alert_steps']}, "
              f"last P {run['p_before_t_grok'][-3:]}", flush=True)  # fmt: skip
    write_report(args.json, report)
    return report


if __name__ == "__main__":
    main()
