"""The transformers callback against the real Trainer (CPU, a tiny BERT built from a config,
nothing downloaded)."""

from __future__ import annotations

import pytest
import torch
from _task import (
    BUDGET,
    CLASSES,
    EXTEND,
    EXTENDED,
    HOPELESS,
    N,
    agent,
    one_thread,  # noqa: F401 (autouse fixture)
)

from grokwatch import Reason, RunPolicy

transformers = pytest.importorskip("transformers")
from grokwatch.integrations.huggingface import GrokwatchCallback  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning"
)

VOCAB, LENGTH = 16, 6


class Logits(torch.nn.Module):
    """The agent probes ``model(input_ids).logits`` (explicit tensors, no adapter needed)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids).logits


class Pairs(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, ids: torch.Tensor, labels: torch.Tensor) -> None:
        self.ids, self.labels = ids, labels

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def train(p: float, policy, tmp_path) -> tuple[object, GrokwatchCallback]:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=LENGTH,
        num_labels=CLASSES,
    )
    model = transformers.BertForSequenceClassification(config)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (N, LENGTH), generator=g)
    labels = torch.randint(0, CLASSES, (N,), generator=g)
    test_ids = torch.randint(0, VOCAB, (N, LENGTH), generator=g)
    test_labels = torch.randint(0, CLASSES, (N,), generator=g)
    probe_data = ((ids, labels), (test_ids, test_labels))
    callback = GrokwatchCallback(agent(Logits(model), p, policy, probe_data=probe_data))
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=EXTENDED * 2,  # the hard cap: room for the extension
        per_device_train_batch_size=N,
        learning_rate=3e-3,
        lr_scheduler_type="constant",
        logging_steps=5,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=Pairs(ids, labels), callbacks=[callback]
    )
    trainer.train()
    return trainer, callback


def test_a_hopeless_run_is_stopped_through_should_training_stop(tmp_path) -> None:
    trainer, callback = train(0.0, HOPELESS, tmp_path)
    assert callback.budget is not None and callback.budget.stopped is not None
    assert callback.budget.stopped.reason is Reason.HOPELESS
    assert trainer.state.global_step < BUDGET // 2


def test_the_budget_stops_the_run_unless_extended(tmp_path) -> None:
    trainer, callback = train(0.9, EXTEND, tmp_path)
    assert callback.budget is not None and callback.budget.extended == EXTENDED - BUDGET
    assert trainer.state.global_step == EXTENDED
    trainer, callback = train(
        0.9, RunPolicy(stop_hopeless=False, stop_finished=False, extend=False), tmp_path
    )
    assert trainer.state.global_step == BUDGET
