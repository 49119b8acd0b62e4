"""Full-batch training of the seed-000 MLP on modular arithmetic, with an optional watcher.

    result = train(RunConfig(p=53, lr=3e-3, wd=1.0, steps=3000))
    result.t_mem, result.t_grok   # first eval with train acc >= 0.99 / test acc >= 0.90

One step is one AdamW update on the whole training set (cross-entropy). With weight decay 1 the
network first memorizes the training pairs (train accuracy 1 within ~100 steps) and only much
later generalizes to the held-out pairs: grokking (Power et al. 2022, arXiv 2201.02177).

A monitoring agent plugs in through `agent_factory(model, data, config) -> agent`; each step,
after the optimizer update, the loop calls `agent.step(step, loss=loss)` and stops when the
returned decision says `should_stop`. The agent may read the model, its gradients and the loss,
and must not write to them: attaching it must not change a single weight of the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from grokwatch import Agent, Decision
from trainer.config import RunConfig
from trainer.model import MLP
from trainer.tasks import Dataset, make_dataset

_SEEDED_INIT = threading.Lock()
"""Held from seeding the global torch generator to the model's last initial weight."""


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """The global torch generator seeded with `seed` for what the block builds, under a lock
    that every run of the process takes: the generator is the process's, and runs built at once
    in threads (the alerting test trains two) would otherwise draw from each other's seeds."""
    with _SEEDED_INIT:
        torch.manual_seed(seed)
        yield


# RESEARCH.md §1: the project's definitions of memorization and grokking.
MEM_THRESHOLD = 0.99  # t_mem: first evaluation with train accuracy >= 0.99
GROK_THRESHOLD = 0.90  # t_grok: first evaluation with test accuracy >= 0.90 (seed 002)
EMB_LR_MULT = 10.0  # optimizer "emb_lr10": embedding lr = 10 × lr (seed 003)


class EvalRecord(NamedTuple):
    """One evaluation of the current weights (train_loss under no_grad, like the accuracies)."""

    step: int
    train_loss: float
    train_acc: float
    test_acc: float


class Watcher(Protocol):
    """What the loop calls each step: a `grokwatch.Agent`, or a thin wrapper around one
    (`trainer.runner.StopAfterGeneralization`, the demo's progress bar) that returns the
    agent's own `grokwatch.Decision`."""

    def step(self, step: int, *, loss: torch.Tensor) -> Decision: ...

    def close(self) -> None: ...


AgentFactory = Callable[[nn.Module, Dataset, Any], Agent | Watcher]


def first_step(history: Iterable[EvalRecord], field: str, threshold: float) -> int | None:
    """The first evaluated step at which `field` reached `threshold`, or None."""
    return next((r.step for r in history if getattr(r, field) >= threshold), None)


@dataclasses.dataclass
class TrainResult:
    config: RunConfig
    state_dict: dict[str, torch.Tensor]  # final weights, on the CPU
    history: list[EvalRecord]  # step 0, every eval_every steps, and the last step
    wall_time: float  # seconds, setup and evaluations included
    steps: int  # optimizer updates done (< config.steps if the agent stopped the run)
    stopped_by_agent: bool

    @property
    def t_mem(self) -> int | None:
        return first_step(self.history, "train_acc", MEM_THRESHOLD)

    @property
    def t_grok(self) -> int | None:
        return first_step(self.history, "test_acc", GROK_THRESHOLD)


def build_model(config: RunConfig) -> MLP:
    return MLP(
        config.p,
        d_emb=config.d_emb,
        d_hidden=config.d_hidden,
        depth=config.depth,
        init_scale=config.init_scale,
        embedding=config.embedding,
        factorized=config.factorized,
    )


def build_optimizer(model: MLP, config: RunConfig) -> torch.optim.Optimizer:
    """AdamW over every parameter (embedding and biases are decayed too, as in seed 000)."""
    if config.optimizer == "emb_lr10" and model.embed is not None:
        # Seed 003 (2505.15624): the embedding rows of rare tokens stagnate, and the bilinear
        # coupling of embedding and first layer wants a larger embedding step. Decoupled
        # weight decay scales with lr, so the embedding is also decayed 10× faster per step.
        emb = list(model.embed.parameters())
        emb_ids = {id(p) for p in emb}
        rest = [p for p in model.parameters() if id(p) not in emb_ids]
        groups = [{"params": emb, "lr": config.lr * EMB_LR_MULT}, {"params": rest}]
        return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, weight_decay=config.wd)
    return torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.wd
    )


class GrokfastEMA:
    """Grokfast-EMA gradient filter (Lee et al. 2024, arXiv 2405.20233, Algorithm 2).

    Before each optimizer step: ema ← α·ema + (1−α)·grad, then grad ← grad + λ·ema. The EMA
    is a low-pass filter; adding it back amplifies the slow gradient component that drives
    generalization. The first call starts the EMA at the gradient itself, as the reference
    code does. Gradients are changed in place, so whoever reads them after the step (an
    agent) sees the filtered update direction.
    """

    def __init__(self, params: Iterable[nn.Parameter], *, alpha: float, lamb: float) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.alpha, self.lamb = alpha, lamb
        self.ema: list[torch.Tensor] | None = None

    @torch.no_grad()
    def __call__(self) -> None:
        grads = [p.grad for p in self.params if p.grad is not None]
        if self.ema is None:
            self.ema = [g.clone() for g in grads]
        else:
            for e, g in zip(self.ema, grads, strict=True):
                e.mul_(self.alpha).add_(g, alpha=1 - self.alpha)
        for g, e in zip(grads, self.ema, strict=True):
            g.add_(e, alpha=self.lamb)


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, step: int, *, chunk: int = 16_384) -> EvalRecord:
    """Train loss and train/test accuracy of the current weights, in eval mode, no grad.

    Batched in chunks of `chunk` rows (bounded memory for large p) with one device→host sync
    at the end. The model's training flag is restored, whatever it was.
    """
    was_training = model.training
    model.eval()
    try:
        sums = []
        for x, y in ((data.train_x, data.train_y), (data.test_x, data.test_y)):
            loss_sum = torch.zeros((), device=x.device)
            correct = torch.zeros((), dtype=torch.long, device=x.device)
            for i in range(0, len(x), chunk):
                logits = model(x[i : i + chunk])  # (n, p)
                loss_sum += F.cross_entropy(logits.float(), y[i : i + chunk], reduction="sum")
                correct += (logits.argmax(dim=-1) == y[i : i + chunk]).sum()
            sums += [loss_sum / len(x), correct / len(x)]
        train_loss, train_acc, _, test_acc = torch.stack(sums).tolist()  # sync: one per eval
    finally:
        model.train(was_training)
    return EvalRecord(step, train_loss, train_acc, test_acc)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={name!r} was asked for but CUDA is not available")
    return torch.device(name)


def train(
    config: RunConfig,
    *,
    agent_factory: AgentFactory | None = None,
    callback: Callable[[EvalRecord], None] | None = None,
) -> TrainResult:
    """Train one model as `config` says; return its final weights and evaluation history.

    The run owns the global torch seed: `torch.manual_seed(config.seed)` right before the
    model is built, under a lock shared by every run of the process (:func:`seeded`), so the
    same config gives the same weights, also when runs train at once in threads.
    `callback(record)` is called at every evaluation (to print or log); `agent_factory` builds
    the watcher (see the module docstring). The loop evaluates every `eval_every` steps whether
    or not an agent is attached — one forward pass over all pairs, under 1 % of the training
    time — so results look the same either way.
    """
    t0 = time.perf_counter()
    old_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)  # process-wide: restored in the finally below
    try:
        device = resolve_device(config.device)

        # data: the split comes from data_seed on a private generator, not from the seed below
        data = make_dataset(config.p, config.op, config.frac, data_seed=config.data_seed)
        data = data.to(device)

        # model and optimizer
        with seeded(config.seed):
            model = build_model(config).to(device)
        optimizer = build_optimizer(model, config)
        grokfast = None
        if config.optimizer == "grokfast":
            grokfast = GrokfastEMA(
                model.parameters(), alpha=config.grokfast_alpha, lamb=config.grokfast_lamb
            )

        history: list[EvalRecord] = []

        def record(step: int) -> None:
            history.append(evaluate(model, data, step))
            if callback is not None:
                callback(history[-1])

        record(0)
        agent = agent_factory(model, data, config) if agent_factory is not None else None
        step, stopped = 0, False
        try:
            model.train()
            for step in range(1, config.steps + 1):  # step = number of updates applied so far
                # Zero at the start, not the end: the gradients of this step are still on
                # the parameters when the agent looks at the model after the update.
                optimizer.zero_grad(set_to_none=True)
                logits = model(data.train_x)  # (N_train, p)
                loss = F.cross_entropy(logits, data.train_y)  # () — never .item() here: a sync
                loss.backward()
                if grokfast is not None:
                    grokfast()
                optimizer.step()

                if agent is not None:
                    decision: Decision = agent.step(step, loss=loss.detach())
                    if decision.should_stop:
                        stopped = True
                        break
                if step % config.eval_every == 0:
                    record(step)
        finally:
            if agent is not None:
                agent.close()
        if history[-1].step != step:
            record(step)  # the final weights are always evaluated
    finally:
        if config.threads is not None:
            torch.set_num_threads(old_threads)

    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return TrainResult(
        config=config,
        state_dict=state,
        history=history,
        wall_time=time.perf_counter() - t0,
        steps=step,
        stopped_by_agent=stopped,
    )
