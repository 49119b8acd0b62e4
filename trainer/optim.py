"""Optimizers of the corpus-v2 families, for one run and for a stack of runs.

A config's `optimizer` is one of `trainer.configbase.OPTIMIZERS`:

- "adamw": AdamW over every parameter (embeddings and biases decayed too, as in seed 000);
- "grokfast": the same AdamW on gradients filtered by Grokfast-EMA (Lee et al. 2024, arXiv
  2405.20233): ema ← α·ema + (1−α)·g, g ← g + λ·ema;
- "emb_lr10": AdamW with the embedding's learning rate × 10 (seed 003); decoupled decay
  scales with lr, so the embedding is also decayed 10× faster per step;
- "sgd": SGD with momentum and coupled (L2) weight decay, as `torch.optim.SGD`.

`make_optimizer` builds the torch optimizers for one model (the one-run-at-a-time reference).
`StackedOptimizer` applies the same update to R runs whose parameters are stacked along a
leading dimension, each with its own lr, weight decay, momentum, Grokfast λ and embedding
multiplier: the formulas of `torch.optim.AdamW`/`SGD` (single-tensor path) written with
per-run `(R, 1, …)` factors, equal to them up to float rounding
(`tests/trainer/test_trainer_stacked.py` checks it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from trainer.train import EMB_LR_MULT, GrokfastEMA


def embedding_params(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of `model.embed` (the token embedding), if the model has one."""
    embed = getattr(model, "embed", None)
    return list(embed.parameters()) if isinstance(embed, nn.Module) else []


def make_optimizer(
    model: nn.Module, config: Any
) -> tuple[torch.optim.Optimizer, GrokfastEMA | None]:
    """The torch optimizer (and Grokfast filter, or None) that `config` asks for."""
    kind = config.optimizer
    if kind == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.wd
        )
        return opt, None
    emb = embedding_params(model)
    if kind == "emb_lr10" and emb:
        emb_ids = {id(p) for p in emb}
        rest = [p for p in model.parameters() if id(p) not in emb_ids]
        groups = [{"params": emb, "lr": config.lr * EMB_LR_MULT}, {"params": rest}]
        opt = torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, weight_decay=config.wd)
    else:
        opt = torch.optim.AdamW(
            model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.wd
        )
    grokfast = None
    if kind == "grokfast":
        grokfast = GrokfastEMA(
            model.parameters(), alpha=config.grokfast_alpha, lamb=config.grokfast_lamb
        )
    return opt, grokfast


class StackedOptimizer:
    """AdamW or SGD (one kind per stack) over parameters stacked as `(R, ...)` tensors.

    `configs` are the R runs' configs, in stack order; `embedding` names the stacked
    parameters that get the embedding lr multiplier of "emb_lr10" runs. All runs of a stack
    start together, so they share the step count of Adam's bias correction.
    """

    EPS = 1e-8  # torch.optim.AdamW's default

    def __init__(
        self,
        params: Mapping[str, torch.Tensor],
        configs: Sequence[Any],
        *,
        embedding: Iterable[str] = (),
    ) -> None:
        kinds = {"sgd" if c.optimizer == "sgd" else "adam" for c in configs}
        if len(kinds) != 1:
            raise ValueError(f"one optimizer kind per stack (adam or sgd), got {sorted(kinds)}")
        self.kind = kinds.pop()
        betas = {tuple(c.betas) for c in configs}
        if len(betas) != 1:
            raise ValueError(f"one betas pair per stack, got {sorted(betas)}")
        self.beta1, self.beta2 = next(iter(betas))
        self.params = dict(params)
        self.embedding = set(embedding)
        device = next(iter(self.params.values())).device

        def per_run(values: Iterable[float]) -> torch.Tensor:
            return torch.tensor(list(values), dtype=torch.float32, device=device)  # (R,)

        self.lr = per_run(c.lr for c in configs)
        self.wd = per_run(c.wd for c in configs)
        self.emb_mult = per_run(EMB_LR_MULT if c.optimizer == "emb_lr10" else 1.0 for c in configs)
        self.momentum = per_run(getattr(c, "momentum", 0.0) for c in configs)
        grokfast = [c.optimizer == "grokfast" for c in configs]
        self.use_grokfast = any(grokfast)
        self.alpha = per_run(c.grokfast_alpha for c in configs)
        # λ = 0 leaves a run's gradient as it is: runs without Grokfast share the stack
        self.lamb = per_run(
            c.grokfast_lamb if g else 0.0 for c, g in zip(configs, grokfast, strict=True)
        )
        self.t = 0
        self.state: dict[str, dict[str, torch.Tensor]] = {name: {} for name in self.params}

    @staticmethod
    def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return v.view(-1, *([1] * (like.dim() - 1)))  # (R,) → (R, 1, …) to broadcast

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        for name, p in self.params.items():
            g = p.grad
            if g is None:
                continue
            state = self.state[name]
            if self.use_grokfast:
                if "ema" not in state:
                    state["ema"] = g.clone()  # the filter starts at the first gradient
                else:
                    alpha = self._view(self.alpha, g)
                    state["ema"].mul_(alpha).add_(g * (1 - alpha))
                g.add_(state["ema"] * self._view(self.lamb, g))
            lr = self.lr * self.emb_mult if name in self.embedding else self.lr
            lr_, wd_ = self._view(lr, p), self._view(self.wd, p)
            if self.kind == "sgd":
                d_p = g + wd_ * p  # coupled L2 decay, as torch.optim.SGD
                if "buf" not in state:
                    state["buf"] = d_p.clone()
                else:
                    state["buf"].mul_(self._view(self.momentum, p)).add_(d_p)
                p.sub_(lr_ * state["buf"])
                continue
            if "m" not in state:
                state["m"], state["v"] = torch.zeros_like(p), torch.zeros_like(p)
            m, v = state["m"], state["v"]
            p.mul_(1 - lr_ * wd_)  # decoupled decay
            m.lerp_(g, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            bias1 = 1 - self.beta1**self.t
            bias2_sqrt = math.sqrt(1 - self.beta2**self.t)
            denom = (v.sqrt() / bias2_sqrt).add_(self.EPS)
            p.sub_((lr_ / bias1) * m / denom)

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the runs at `index` (the others finished); parameters are re-indexed by
        the caller, which owns them, and passed back with :meth:`reset_params`."""
        for name in self.state:
            self.state[name] = {k: v[index] for k, v in self.state[name].items()}
        for key in ("lr", "wd", "emb_mult", "momentum", "alpha", "lamb"):
            setattr(self, key, getattr(self, key)[index])

    def reset_params(self, params: Mapping[str, torch.Tensor]) -> None:
        self.params = dict(params)
