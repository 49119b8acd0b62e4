"""Reference training code for grokwatch: modular arithmetic tasks, the seed-000 MLP, a
full-batch AdamW loop with a hook for the monitoring agent, and a CLI (`python -m trainer.run`).
"""

from trainer.config import OPTIMIZERS, RunConfig
from trainer.model import MLP
from trainer.tasks import OPS, Dataset, is_prime, make_dataset
from trainer.train import (
    GROK_THRESHOLD,
    MEM_THRESHOLD,
    EvalRecord,
    GrokfastEMA,
    TrainResult,
    build_model,
    build_optimizer,
    evaluate,
    first_step,
    train,
)

__all__ = [
    "GROK_THRESHOLD",
    "MEM_THRESHOLD",
    "MLP",
    "OPS",
    "OPTIMIZERS",
    "Dataset",
    "EvalRecord",
    "GrokfastEMA",
    "RunConfig",
    "TrainResult",
    "build_model",
    "build_optimizer",
    "evaluate",
    "first_step",
    "is_prime",
    "make_dataset",
    "train",
]
