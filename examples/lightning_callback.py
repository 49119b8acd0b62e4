"""grokwatch in PyTorch Lightning: a callback that feeds the agent and follows its advice.

The run of ``plain_loop.py`` as a ``LightningModule`` (full batch, AdamW with weight decay),
trained by a real ``lightning.Trainer`` with ``GrokwatchCallback``: the agent's run policy stops
the run once it has generalized (it would stop a hopeless run early, and extend one forecast to
grok just after its budget by raising the trainer's ``max_steps``). Needs ``lightning``
(``pip install -e ".[lightning]"``).

    python examples/lightning_callback.py [--steps 2000]
"""

from __future__ import annotations

import argparse
import logging

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import grokwatch
from grokwatch.integrations.lightning import GrokwatchCallback
from trainer.model import MLP
from trainer.tasks import make_dataset


class ModularAddition(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = MLP(31, d_emb=32, d_hidden=64)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x), y)  # the callback hands this loss to the agent

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-2, weight_decay=1.0, betas=(0.9, 0.98))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.manual_seed(0)
    data = make_dataset(31, "add", 0.5, data_seed=0)
    module = ModularAddition()
    agent = grokwatch.Agent(
        module.net,
        train=(data.train_x, data.train_y),
        test=(data.test_x, data.test_y),
        every=100,
        budget=args.steps,
        policy=grokwatch.RunPolicy(),  # opt in to stop/extend advice
        transport=None,  # nothing kept on disk
    )
    full_batch = DataLoader(TensorDataset(data.train_x, data.train_y), batch_size=len(data.train_x))
    trainer = pl.Trainer(
        max_steps=args.steps,
        callbacks=[GrokwatchCallback(agent)],
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, full_batch)
    s = agent.summary()
    print(f"Lightning trained {trainer.global_step} of {args.steps} steps")
    print(f"last decision: {agent.decision.action} ({agent.decision.reason})")
    print(f"outcome {s['outcome']}: t_mem={s['t_mem']} t_grok={s['t_grok']}")


if __name__ == "__main__":
    main()
