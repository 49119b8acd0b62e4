"""The Lightning callback against the real Lightning Trainer (CPU, a tiny model)."""

from __future__ import annotations

import pytest
import torch
from _task import (
    BUDGET,
    EXTEND,
    EXTENDED,
    HOPELESS,
    LR,
    agent,
    data,
    mlp,
    one_thread,  # noqa: F401 (autouse fixture)
)

from grokwatch import Reason

pl = pytest.importorskip("lightning.pytorch")
from grokwatch.integrations.lightning import GrokwatchCallback  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning",  # Lightning's advice on workers, logging and batch sizes
    "ignore::DeprecationWarning",
    "ignore::FutureWarning",  # torch.utils._pytree deprecations Lightning triggers
)


class Module(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = mlp()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=LR)


def fit(p: float, policy, max_steps: int, **trainer_kw) -> tuple[pl.Trainer, GrokwatchCallback]:
    module = Module()
    (x, y), _ = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    callback = GrokwatchCallback(agent(module.net, p, policy, budget=BUDGET))
    trainer = pl.Trainer(
        callbacks=[callback],
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_steps=max_steps,
        **trainer_kw,
    )
    trainer.fit(module, loader)
    return trainer, callback


def test_a_hopeless_run_is_stopped_through_trainer_should_stop() -> None:
    trainer, callback = fit(0.0, HOPELESS, BUDGET)
    assert callback.budget is not None and callback.budget.stopped is not None
    assert callback.budget.stopped.reason is Reason.HOPELESS
    assert trainer.global_step < BUDGET // 2


def test_an_extension_raises_max_steps() -> None:
    trainer, callback = fit(0.9, EXTEND, BUDGET)
    assert callback.budget is not None and callback.budget.extended == EXTENDED - BUDGET
    assert trainer.global_step == EXTENDED


def test_an_epoch_based_run_is_extended_in_epochs() -> None:
    trainer, callback = fit(0.9, EXTEND, -1, max_epochs=BUDGET)  # one batch per epoch
    assert callback.budget is not None and callback.budget.extended == EXTENDED - BUDGET
    assert trainer.current_epoch == EXTENDED
