"""A model trained with MSE, watched live at the agent's defaults: loss found vs named vs CE.

Omnigrok-style digits MLPs (``trainer.families``: MSE on one-hot targets, large init, weight
decay) trained one at a time by the trainer's own loop, each watched by three
:class:`grokwatch.Agent` at once, at their defaults (the default grid of evaluation steps,
``budget=steps``, the shipped forecaster) but for what is said below:

- ``found``: the loss not named: the agent finds it from the loss the loop reports
  (:mod:`grokwatch.losses`);
- ``named``: ``ModelIO(loss_fn=mse_one_hot)``, the loss named;
- ``cross_entropy``: ``ModelIO(loss_fn=cross_entropy_per_sample)``: the agent's behaviour
  before it found the loss (it measured cross-entropy unless told otherwise).

The agents only observe, so the three watch the same run and the comparison is paired. The
schedule is made the same for all three and independent of this shared machine's load: the
agents evaluate every step of the default grid (``overhead=None``) with the one probe the
forecaster reads (``loss_accuracy``; forecaster v2 reads only loss and accuracy), and their
recorded evaluations are replayed through fresh detectors on two schedules:

- ``defaults``: the steps the capped agent evaluates at its defaults
  (:func:`grokwatch.schedule.planned_steps` at the MLP's measured costs,
  :data:`grokwatch.forecast.replay.MLP_COSTS`: the *agent defaults* view of the
  leave-one-family-out evaluation; the planned steps are grid steps, so they are read exactly);
- ``grid``: every step of the default grid (the agent without its overhead cap).

Each with the shipped forecaster and with the leave-one-family-out fold model that never saw
a digits run (``benchmarks/results/forecast/lofo/models/digits.npz``; the shipped forecaster
was fitted on corpus digits runs, other than these: fresh seeds).

The runs: the configurations of the corpus v2 digits runs trained with MSE (sorted by run
id), ``--grokking`` of those labelled grokking and ``--negative`` of those that never
generalized, each trained again with fresh seeds (``seed + 1``, ``data_seed + 1``) and
labelled from the trainer's own evaluations every 50 steps by the corpus rules
(:func:`grokwatch.events.outcome`). Per agent, schedule and forecaster: the first alert step,
whether it comes before ``t_grok``, its lead as a fraction of the gap
(``(t_grok - alert) / gap``), recall and false alarms (alerts on runs that do not grok within
their budget).

    GW_PAUSABLE=1 nice -n 19 python -m benchmarks.forecast_mse_live        # the committed run
    python -m benchmarks.forecast_mse_live --grokking 1 --negative 0 --out /tmp/mse.json  # smoke

Results: ``benchmarks/results/forecast/mse_live.json``; the docs table is
``python benchmarks/doc_tables.py forecast_mse_live``.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from grokwatch import Agent, ModelIO
from grokwatch.detector import RunDetector
from grokwatch.events import outcome
from grokwatch.forecast.io import load as load_model
from grokwatch.forecast.replay import MLP_COSTS
from grokwatch.probes.base import cross_entropy_per_sample
from grokwatch.schedule import planned_steps

AGENTS = ("found", "named", "cross_entropy")
SCHEDULES = ("defaults", "grid")
FORECASTERS = ("shipped", "fold")
FOLD_MODEL = Path("benchmarks/results/forecast/lofo/models/digits.npz")
OUT = Path("benchmarks/results/forecast/mse_live.json")


def corpus_configs(grokking: int, negative: int) -> list[dict[str, Any]]:
    """The configurations of corpus v2's MSE digits runs, ``grokking`` labelled grokking and
    ``negative`` that never generalized, sorted by run id; fresh seeds."""
    from grokwatch.forecast.replay import architecture_family
    from trainer.corpus import load

    runs = sorted(
        (
            r
            for r in load("trainer/data/corpus", split=("train", "eval", "heldout"))
            if architecture_family(r) == "digits" and r.config.get("loss", "mse") == "mse"
        ),
        key=lambda r: r.run_id,
    )
    picked = [r for r in runs if r.labels.get("outcome") == "grokking"][:grokking]
    picked += [r for r in runs if r.labels.get("outcome") in ("memorization", "confusion")][
        :negative
    ]
    return [
        {
            **r.config,
            "seed": r.config["seed"] + 1,
            "data_seed": r.config["data_seed"] + 1,
            "corpus_run": r.run_id,
            "corpus_outcome": r.labels["outcome"],
        }
        for r in picked
    ]


class Watchers:
    """Three agents on one loop, through the trainer's ``agent_factory`` hook."""

    def __init__(self, agents: dict[str, Agent]) -> None:
        self.agents = agents

    def step(self, step: int, *, loss: torch.Tensor) -> Any:
        decisions = [a.step(step, loss=loss) for a in self.agents.values()]
        return decisions[0]  # CONTINUE: no policy

    def close(self) -> None:
        for a in self.agents.values():
            a.close()


def first_alert(points: list[tuple[int, dict[str, float]]], forecaster: Any, budget: int) -> Any:
    """Replay an agent's evaluations through a fresh detector; the first alerting step and the
    forecasts (step, P(grok within budget))."""
    detector = RunDetector(budget=budget, forecaster=forecaster)
    alert, trace = None, []
    for step, values in points:
        f = detector.observe(step, values).forecast
        if f is None:
            continue
        trace.append((step, round(f.p_grok_budget, 4)))
        if f.alert and alert is None:
            alert = step
    return alert, trace


def train_one(config: dict[str, Any], fold_model: Any) -> dict[str, Any]:
    from trainer.families import DigitsConfig, mse_one_hot, train_family

    cfg = DigitsConfig.from_dict({k: v for k, v in config.items() if not k.startswith("corpus")})
    made: dict[str, Agent] = {}

    def factory(model: torch.nn.Module, data: Any, _: Any) -> Watchers:
        ios = {
            "found": None,
            "named": ModelIO(loss_fn=mse_one_hot),
            "cross_entropy": ModelIO(loss_fn=cross_entropy_per_sample),
        }
        for name, io in ios.items():
            made[name] = Agent(
                model,
                train=(data.train_x, data.train_y),
                test=(data.test_x, data.test_y),
                budget=cfg.steps,
                transport=None,
                io=io,
                probes=["loss_accuracy"],
                overhead=None,
                seed=0,
            )
        return Watchers(made)

    t0 = time.perf_counter()
    result = train_family(cfg, agent_factory=factory)
    t_mem, t_grok = result.t_mem, result.t_grok
    label = outcome(t_mem, t_grok).value
    gap = t_grok - t_mem if t_grok is not None and t_mem is not None else None
    row: dict[str, Any] = {
        "config": config,
        "outcome": label,
        "t_mem": t_mem,
        "t_grok": t_grok,
        "gap": gap,
        "steps": result.steps,
        "seconds": round(time.perf_counter() - t0, 1),
        "agents": {},
    }
    planned = set(
        planned_steps(
            cfg.steps, MLP_COSTS.evaluation, one_off=MLP_COSTS.one_off, call_cost=MLP_COSTS.call
        )
    )
    for name, agent in made.items():
        points = list(agent.history)
        entry: dict[str, Any] = {
            "loss": agent.loss.name,
            "loss_source": agent.loss.source.value,
            "evaluations": len(points),
            "errors": agent.errors,
        }
        first = points[0][0] if points else None
        on = {
            "grid": points,
            # the first evaluation and the planned steps (the first call evaluates)
            "defaults": [(s, v) for s, v in points if s == first or s in planned],
        }
        for schedule, kept in on.items():
            entry[schedule] = {"steps": [s for s, _ in kept]}
            for which, model in (("shipped", "default"), ("fold", fold_model)):
                alert, trace = first_alert(kept, model, cfg.steps)
                entry[schedule][which] = {
                    "alert": alert,
                    "p": trace,
                    **judge(alert, t_grok, gap, label),
                }
        row["agents"][name] = entry
    row["same_losses"] = same_losses(made["found"], made["named"])
    return row


def same_losses(found: Agent, named: Agent) -> bool:
    """Whether the agent that found the loss measured what the one told it did."""
    a, b = list(found.history), list(named.history)
    return len(a) == len(b) and all(
        s == t and all(math.isclose(x[k], y[k], rel_tol=1e-6) for k in ("train_loss", "test_loss"))
        for (s, x), (t, y) in zip(a, b, strict=True)
    )


def judge(alert: int | None, t_grok: int | None, gap: int | None, label: str) -> dict[str, Any]:
    """Whether the alert came before ``t_grok`` and its lead as a fraction of the gap."""
    before = alert is not None and t_grok is not None and alert < t_grok
    lead = (t_grok - alert) / gap if before and gap else None  # type: ignore[operator]
    return {
        "before_t_grok": before,
        "lead_gap": lead,
        "false_alarm": label != "grokking" and label != "comprehension" and alert is not None,
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per agent, schedule and forecaster: recall (alert before t_grok on grokking runs),
    median lead (alerted runs; all grokking runs with 0 for a miss), false-alarm rate."""
    grok = [r for r in rows if r["outcome"] == "grokking"]
    neg = [r for r in rows if r["outcome"] in ("memorization", "confusion")]
    out: dict[str, Any] = {
        "n_runs": len(rows),
        "n_grokking": len(grok),
        "n_negative": len(neg),
        "outcomes": dict(sorted(collections.Counter(r["outcome"] for r in rows).items())),
        "same_losses_found_named": sum(r["same_losses"] for r in rows),
    }
    for name in AGENTS:
        for schedule in SCHEDULES:
            for which in FORECASTERS:
                got = [r["agents"][name][schedule][which] for r in grok]
                leads = [g["lead_gap"] for g in got if g["before_t_grok"]]
                alarms = [r["agents"][name][schedule][which]["false_alarm"] for r in neg]
                out[f"{name}/{schedule}/{which}"] = {
                    "recall": len(leads) / len(grok) if grok else math.nan,
                    "alerted_before": len(leads),
                    "median_lead_gap": _median(leads),
                    "median_lead_gap_all": _median(leads + [0.0] * (len(grok) - len(leads))),
                    "far": sum(alarms) / len(neg) if neg else math.nan,
                    "false_alarms": sum(alarms),
                }
        out[f"{name}/loss_found"] = dict(
            sorted(collections.Counter(r["agents"][name]["loss"] for r in rows).items())
        )
    return out


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grokking", type=int, default=16, help="corpus grokking configs (16)")
    ap.add_argument("--negative", type=int, default=8, help="configs that never generalized (8)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    fold_model = load_model(FOLD_MODEL)
    rows = []
    for i, config in enumerate(corpus_configs(args.grokking, args.negative)):
        row = train_one(config, fold_model)
        rows.append(row)
        a = row["agents"]
        print(
            f"[{i + 1}] {config['corpus_run']} {row['outcome']} t_grok {row['t_grok']} "
            f"({row['seconds']} s, same losses {row['same_losses']}): "
            + "; ".join(
                f"{n} ({a[n]['loss']}) alert {a[n]['defaults']['shipped']['alert']} / "
                f"{a[n]['defaults']['fold']['alert']}"
                for n in AGENTS
            ),
            flush=True,
        )
        result = {
            "summary": summarize(rows),
            "settings": {
                **{k: v for k, v in vars(args).items() if k != "out"},
                "fold_model": str(FOLD_MODEL),
                "torch_threads": 1,
                "agent_costs": MLP_COSTS._asdict(),
            },
            "runs": rows,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(summarize(rows), indent=1))


if __name__ == "__main__":
    main()
