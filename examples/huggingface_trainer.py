"""grokwatch in the Hugging Face ``Trainer``: a ``TrainerCallback`` that follows the advice.

The run of ``plain_loop.py`` trained by a real ``transformers.Trainer`` (full batch, AdamW with
weight decay, constant learning rate; nothing is downloaded) with ``GrokwatchCallback``: the
agent's run policy stops training once the run has generalized (``control.should_training_stop``;
an extension would raise ``state.max_steps`` up to ``TrainingArguments.max_steps``). Needs
``transformers`` and ``accelerate`` (``pip install -e ".[huggingface]"``).

    python examples/huggingface_trainer.py [--steps 2000]
"""

from __future__ import annotations

import argparse
import tempfile

import torch
import torch.nn.functional as F
from transformers import PrinterCallback, Trainer, TrainingArguments
from transformers.utils import logging as hf_logging

import grokwatch
from grokwatch.integrations.huggingface import GrokwatchCallback
from trainer.model import MLP
from trainer.tasks import make_dataset


class WithLoss(torch.nn.Module):
    """What ``Trainer`` expects of a model: keyword inputs in, a dict with the loss out."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, pairs: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(pairs)  # (N, 31)
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}


class Pairs(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pairs": self.x[i], "labels": self.y[i]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    data = make_dataset(31, "add", 0.5, data_seed=0)
    net = MLP(31, d_emb=32, d_hidden=64)
    agent = grokwatch.Agent(
        net,  # the agent probes the network itself; the Trainer trains it inside WithLoss
        train=(data.train_x, data.train_y),
        test=(data.test_x, data.test_y),
        every=100,
        budget=args.steps,
        policy=grokwatch.RunPolicy(),
        transport=None,  # nothing kept on disk
    )
    with tempfile.TemporaryDirectory() as out:
        training = TrainingArguments(
            out,
            max_steps=args.steps,
            per_device_train_batch_size=len(data.train_x),  # full batch
            learning_rate=1e-2,
            weight_decay=1.0,
            adam_beta2=0.98,
            lr_scheduler_type="constant",
            logging_steps=1,  # the callback reads the logged training loss
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
            seed=0,
        )
        trainer = Trainer(
            model=WithLoss(net),
            args=training,
            train_dataset=Pairs(data.train_x, data.train_y),
            callbacks=[GrokwatchCallback(agent)],
        )
        trainer.remove_callback(PrinterCallback)  # no log line per step
        trainer.train()
    s = agent.summary()
    print(f"Trainer ran {trainer.state.global_step} of {args.steps} steps")
    print(f"last decision: {agent.decision.action} ({agent.decision.reason})")
    print(f"outcome {s['outcome']}: t_mem={s['t_mem']} t_grok={s['t_grok']}")


if __name__ == "__main__":
    main()
