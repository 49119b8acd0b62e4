"""Train one run from the command line, watched by the grokwatch agent unless --no-agent.

    python -m trainer.run --p 53 --op add --frac 0.5 --lr 3e-3 --wd 1.0 --steps 3000 \\
        --seed 0 --out runs/add53

Every RunConfig field is a flag (--d_emb and --d-emb both work; booleans take --no-...).
Writes config.json and history.json into --out, prints one line per evaluation and, at the
end, t_mem (first eval with train acc >= 0.99) and t_grok (first eval with test acc >= 0.90).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from trainer.config import OPTIMIZERS, RunConfig
from trainer.tasks import OPS
from trainer.train import AgentFactory, EvalRecord, TrainResult, train

CHOICES: dict[str, Sequence[str]] = {"op": sorted(OPS), "optimizer": OPTIMIZERS}


def _add_field(parser: argparse.ArgumentParser, field: dataclasses.Field[Any]) -> None:
    flags = [f"--{field.name}"]
    if "_" in field.name:
        flags.append(f"--{field.name.replace('_', '-')}")
    hint = typing.get_type_hints(RunConfig)[field.name]
    kwargs: dict[str, Any] = {"default": field.default, "dest": field.name}
    if hint is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif field.name == "betas":
        kwargs.update(nargs=2, type=float, metavar=("BETA1", "BETA2"))
    elif isinstance(hint, types.UnionType):  # int | None
        kwargs["type"] = next(t for t in typing.get_args(hint) if t is not type(None))
    else:
        kwargs["type"] = hint
    if field.name in CHOICES:
        kwargs["choices"] = CHOICES[field.name]
    kwargs["help"] = f"(default: {field.default})"
    parser.add_argument(*flags, **kwargs)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.run", description=__doc__.split("\n\n")[0]
    )
    for field in dataclasses.fields(RunConfig):
        _add_field(parser, field)
    parser.add_argument("--out", type=Path, default=None, help="(default: runs/<run-id>)")
    parser.add_argument("--run-id", default=None, help="(default: from op, p, frac, seed, time)")
    parser.add_argument("--no-agent", action="store_true", help="train without grokwatch")
    parser.add_argument("--db", default=None, help="agent's SQLite run table (default: none)")
    parser.add_argument("--save-model", action="store_true", help="also write model.pt")
    parser.add_argument("--quiet", action="store_true", help="no per-evaluation lines")
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)}
    values["betas"] = tuple(values["betas"])
    return RunConfig(**values)


def grokwatch_factory(run_id: str, db: str | None) -> AgentFactory:
    """Build the agent factory; ImportError if grokwatch.Agent is not available."""
    from grokwatch import Agent

    def factory(model: torch.nn.Module, data: Any, config: RunConfig) -> Any:
        return Agent(
            model,
            train=(data.train_x, data.train_y),
            test=(data.test_x, data.test_y),
            every=config.eval_every,
            run_id=run_id,
            config=config.to_dict(),
            budget=config.steps,
            transport=db,
            modulus=config.p,
        )

    return factory


def history_dict(result: TrainResult) -> dict[str, Any]:
    return {
        "t_mem": result.t_mem,
        "t_grok": result.t_grok,
        "steps": result.steps,
        "stopped_by_agent": result.stopped_by_agent,
        "wall_time": result.wall_time,
        "history": [r._asdict() for r in result.history],
    }


def main(argv: Sequence[str] | None = None) -> TrainResult:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    run_id = args.run_id or (
        f"{config.op}-p{config.p}-f{config.frac}-s{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    out: Path = args.out if args.out is not None else Path("runs") / run_id
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / "config.json")

    factory = None
    if not args.no_agent:
        try:
            factory = grokwatch_factory(run_id, args.db)
        except ImportError as exc:
            parser.error(f"the grokwatch agent is not available ({exc}); pass --no-agent")

    def report(r: EvalRecord) -> None:
        if not args.quiet:
            print(
                f"step {r.step:6d} | loss {r.train_loss:.4g} | "
                f"train acc {r.train_acc:.3f} | test acc {r.test_acc:.3f}",
                flush=True,
            )

    result = train(config, agent_factory=factory, callback=report)
    (out / "history.json").write_text(json.dumps(history_dict(result), indent=2) + "\n")
    if args.save_model:
        torch.save(result.state_dict, out / "model.pt")
    stop = " (stopped by the agent)" if result.stopped_by_agent else ""
    print(
        f"t_mem {result.t_mem} | t_grok {result.t_grok} | {result.steps} steps{stop} "
        f"in {result.wall_time:.1f} s | outputs in {out}"
    )
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
