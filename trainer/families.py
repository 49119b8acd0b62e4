"""Evaluation-only model families: a 1-layer transformer on modular arithmetic and an
Omnigrok-style MLP on scikit-learn's 8×8 digits.

The forecaster is fitted on the seed-000 MLP family (`trainer.train`); these two families are
never used to fit it, only to ask whether what it learned transfers to another architecture
(transformer) and to another task and loss (digits, MSE). Both are trained like the reference
run: full batch, AdamW, one evaluation every `eval_every` steps, a monitoring agent plugged in
through the same `agent_factory(model, data, config)` hook.

Transformer (Nanda et al. 2023, arXiv 2301.05217, made small enough for a CPU). Input tokens
[a, b, =], learned token and position embeddings, one attention layer, one ReLU MLP, no layer
norm, unembedding read at the "=" position. Nanda's run is p = 113, d_model 128, 30 % of the
pairs, lr 1e-3, wd 1, and it groks after 7k–24k steps (RESEARCH.md §3); p 23–53 with
d_model 32–64 groks within a few thousand steps.

Digits (Liu et al. 2022, "Omnigrok", arXiv 2210.01117). An MLP on the 64 pixels of
`sklearn.datasets.load_digits` (1797 images bundled with scikit-learn: nothing is downloaded),
trained on a small subset (200 images) with MSE against one-hot targets and the weights
initialized `init_scale` (≈ 8) times larger than usual. A large initial weight norm makes the
network memorize first and generalize only once weight decay has shrunk the norm: grokking on
a task that is not algorithmic (measured here: memorized by ~1.7k steps at ~15 % test accuracy,
~95 % after 20–40k steps at wd 0.05–0.1).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from trainer.config import RunConfig
from trainer.configbase import TrainingConfig
from trainer.datasets import parity_dataset, permutation_dataset
from trainer.families_v2 import ParityConfig, ParityMLP, PermConfig
from trainer.model import MLP
from trainer.tasks import OPS, Dataset, is_prime, make_dataset, n_train_examples
from trainer.train import AgentFactory, EvalRecord, build_model, first_step, seeded, train

# -- configuration ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TransformerConfig(TrainingConfig):
    p: int = 31
    op: str = "add"
    frac: float = 0.5
    d_model: int = 64
    n_heads: int = 4
    d_mlp: int = 128
    # corpus v2: depth and pre-LayerNorm (and the optimizer variants of TrainingConfig)
    n_layers: int = 1
    layernorm: bool = False

    OMIT_AT_DEFAULT: ClassVar = ("n_layers", "layernorm", *TrainingConfig.V2_OPTIMIZER_FIELDS)
    BOOLS: ClassVar = ("layernorm",)
    INTS: ClassVar = (*TrainingConfig.INTS, "p", "d_model", "n_heads", "d_mlp", "n_layers")
    FLOATS: ClassVar = (*TrainingConfig.FLOATS, "frac")
    STRS: ClassVar = (*TrainingConfig.STRS, "op")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_layers not in (1, 2):
            self._fail("n_layers", "1 or 2")
        if self.p < 2:
            self._fail("p", ">= 2")
        if self.op not in OPS:
            self._fail("op", f"one of {sorted(OPS)}")
        if self.op == "div" and not is_prime(self.p):
            self._fail("p", "prime for op 'div' (b⁻¹ mod p must exist for every b ≠ 0)")
        if not 0 < self.frac < 1:
            self._fail("frac", "in (0, 1)")
        n_train, n = n_train_examples(self.p, self.op, self.frac)
        if not 0 < n_train < n:
            self._fail("frac", f"such that train and test are both non-empty ({n_train} of {n})")
        for key in ("d_model", "n_heads", "d_mlp"):
            if getattr(self, key) <= 0:
                self._fail(key, "> 0")
        if self.d_model % self.n_heads:
            self._fail("n_heads", f"a divisor of d_model={self.d_model}")


@dataclasses.dataclass(frozen=True)
class DigitsConfig(TrainingConfig):
    n_train: int = 200
    wd: float = 0.05
    steps: int = 20_000
    width: int = 200
    depth: int = 2  # hidden layers
    init_scale: float = 8.0
    # corpus v2: the loss (Omnigrok's MSE on one-hot targets, or cross-entropy)
    loss: str = "mse"

    OMIT_AT_DEFAULT: ClassVar = ("loss", *TrainingConfig.V2_OPTIMIZER_FIELDS)
    INTS: ClassVar = (*TrainingConfig.INTS, "n_train", "width", "depth")
    STRS: ClassVar = (*TrainingConfig.STRS, "loss")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss not in ("mse", "ce"):
            self._fail("loss", "'mse' or 'ce'")
        if not 10 <= self.n_train <= DIGITS_IMAGES - 100:
            self._fail("n_train", f"in [10, {DIGITS_IMAGES - 100}] (100 images kept for test)")
        if self.width <= 0:
            self._fail("width", "> 0")
        if self.depth not in (1, 2, 3):
            self._fail("depth", "1, 2 or 3")


DIGITS_IMAGES = 1797  # len(sklearn.datasets.load_digits().target)

# -- models ----------------------------------------------------------------------------------


class Block(nn.Module):
    """An attention layer and a ReLU MLP over the whole sequence (the non-final layers of a
    2-layer transformer), residual, optionally pre-LayerNorm; no mask over the 3 tokens."""

    def __init__(self, d: int, n_heads: int, d_mlp: int, *, layernorm: bool) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(d) if layernorm else nn.Identity()
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.ln2 = nn.LayerNorm(d) if layernorm else nn.Identity()
        self.mlp_in = nn.Linear(d, d_mlp)
        self.act = nn.ReLU()
        self.mlp_out = nn.Linear(d_mlp, d)

    def forward(self, resid: torch.Tensor) -> torch.Tensor:
        n, t, d = resid.shape
        dh = d // self.n_heads
        q, k, v = self.qkv(self.ln1(resid)).chunk(3, dim=-1)  # (N, 3, d) each
        q, k, v = (z.reshape(n, t, self.n_heads, dh).transpose(1, 2) for z in (q, k, v))
        att = ((q @ k.transpose(-1, -2)) / math.sqrt(dh)).softmax(-1) @ v  # (N, h, 3, dh)
        resid = resid + self.attn_out(att.transpose(1, 2).reshape(n, t, d))  # (N, 3, d)
        return resid + self.mlp_out(self.act(self.mlp_in(self.ln2(resid))))  # (N, 3, d)

    def stacked_forward(self, resid: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` written for a stack of runs (:meth:`Transformer.stacked_forward`)."""
        n, t, d = resid.shape
        dh = d // self.n_heads
        w = self.qkv.weight
        normed = self.ln1(resid)  # (N, 3, d)
        # q, k, v: (N, 3, h, dh) each
        q, k, v = (F.linear(normed, w[i * d : (i + 1) * d]).view(n, t, self.n_heads, dh)
                   for i in range(3))  # fmt: skip
        scores = torch.stack([(q * k[:, j : j + 1]).sum(-1) for j in range(t)], 2) / math.sqrt(dh)
        a = scores.softmax(2)  # (N, 3 queries, 3 keys, h)
        att = sum(a[:, :, j, :, None] * v[:, None, j] for j in range(t))  # (N, 3, h, dh)
        resid = resid + self.attn_out(att.reshape(n, t, d))  # (N, 3, d)
        return resid + self.mlp_out(self.act(self.mlp_in(self.ln2(resid))))  # (N, 3, d)


class Transformer(nn.Module):
    """One or two attention layers, each with a ReLU MLP, over the tokens [a, b, =]; logits
    over Z_p.

    Only the "=" position is ever read, and in the last layer nothing else depends on the
    outputs at positions a and b, so the last layer's attention query and MLP are computed for
    that position alone: the same function as the full-sequence model, a third of its cost.
    With `n_layers=2` the first layer (`early`, a :class:`Block`) runs over all three tokens.
    `layernorm` adds pre-LayerNorms (and a final one before the unembedding); without it and at
    one layer the model is corpus v1's, parameter for parameter.
    Module names follow the probe contract: `embed` is the first nn.Embedding (rows 0..p−1
    are residues, row p is "="), `act` the last activation, `out` the last nn.Linear.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        p, d, h = config.p, config.d_model, config.n_heads
        self.p, self.n_heads = p, h
        ln = config.layernorm
        self.embed = nn.Embedding(p + 1, d)  # residues and the "=" token
        self.pos = nn.Embedding(3, d)
        self.early = nn.ModuleList(
            Block(d, h, config.d_mlp, layernorm=ln) for _ in range(config.n_layers - 1)
        )
        self.ln1 = nn.LayerNorm(d) if ln else nn.Identity()
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.ln2 = nn.LayerNorm(d) if ln else nn.Identity()
        self.mlp_in = nn.Linear(d, config.d_mlp)
        self.act = nn.ReLU()
        self.mlp_out = nn.Linear(config.d_mlp, d)
        self.ln_f = nn.LayerNorm(d) if ln else nn.Identity()
        self.out = nn.Linear(d, p, bias=False)  # unembedding
        with torch.no_grad():
            for name, param in self.named_parameters():
                if param.dim() >= 2:
                    nn.init.normal_(param, std=config.init_scale / math.sqrt(param.shape[-1]))
                elif ".ln" in f".{name}" and name.endswith("weight"):
                    nn.init.ones_(param)  # a LayerNorm's gain starts at 1
                else:
                    nn.init.zeros_(param)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        eq = torch.full((n, 1), self.p, dtype=x.dtype, device=x.device)
        tokens = torch.cat([x, eq], dim=1)  # (N, 3)
        resid = self.embed(tokens) + self.pos.weight  # (N, 3, d)
        for block in self.early:
            resid = block(resid)  # (N, 3, d)
        normed = self.ln1(resid)  # (N, 3, d)
        q, k, v = self.qkv(normed).chunk(3, dim=-1)  # (N, 3, d) each
        d_head = q.shape[-1] // self.n_heads
        q = q[:, -1].reshape(n, self.n_heads, 1, d_head)  # (N, h, 1, dh): "=" queries only
        k = k.reshape(n, 3, self.n_heads, d_head).transpose(1, 2)  # (N, h, 3, dh)
        v = v.reshape(n, 3, self.n_heads, d_head).transpose(1, 2)  # (N, h, 3, dh)
        # "=" is the last token, so a causal mask lets it see all three: no mask needed.
        # Written out rather than F.scaled_dot_product_attention: with three keys per query,
        # the fused CPU kernel's set-up cost is ~40 % of a training step.
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d_head)  # (N, h, 1, 3)
        att = scores.softmax(dim=-1) @ v  # (N, h, 1, dh)
        z = resid[:, -1] + self.attn_out(att.reshape(n, -1))  # (N, d)
        z = z + self.mlp_out(self.act(self.mlp_in(self.ln2(z))))  # (N, d)
        return self.out(self.ln_f(z))  # (N, p)

    def stacked_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same function as :meth:`forward`, written for `vmap` over a stack of runs
        (`trainer.stacked`, which swaps it in for the stack's forward).

        Under `vmap` the attention's `bmm`s become batches of thousands of 3×3 and 3×dh
        products, which run at ~1 GFLOP/s; here the three keys are products and sums over the
        head dimension, and q, k and v are three projections instead of one `chunk`-ed one
        (whose backward is a `cat`): `benchmarks/stacked_step.py` times both (docs/corpus.md,
        *The transformer's stacked form*). The float rounding differs from :meth:`forward`'s,
        so a run trained in a stack equals the same run trained alone within a tolerance
        (`tests/trainer/test_trainer_stacked.py`), not bit for bit.
        """
        n = x.shape[0]
        eq = torch.full((n, 1), self.p, dtype=x.dtype, device=x.device)
        resid = self.embed(torch.cat([x, eq], dim=1)) + self.pos.weight  # (N, 3, d)
        for block in self.early:
            resid = block.stacked_forward(resid)  # (N, 3, d)
        normed = self.ln1(resid)  # (N, 3, d)
        d = normed.shape[-1]
        dh = d // self.n_heads
        w = self.qkv.weight
        q = F.linear(normed[:, -1], w[:d]).view(n, self.n_heads, dh)  # (N, h, dh): "=" only
        k = F.linear(normed, w[d : 2 * d]).view(n, 3, self.n_heads, dh)  # (N, 3, h, dh)
        v = F.linear(normed, w[2 * d :]).view(n, 3, self.n_heads, dh)  # (N, 3, h, dh)
        scores = (q[:, None] * k).sum(-1) / math.sqrt(dh)  # (N, 3 keys, h)
        att = (scores.softmax(1)[..., None] * v).sum(1)  # (N, h, dh)
        z = resid[:, -1] + self.attn_out(att.reshape(n, d))  # (N, d)
        z = z + self.mlp_out(self.act(self.mlp_in(self.ln2(z))))  # (N, d)
        return self.out(self.ln_f(z))  # (N, p)


class DigitsMLP(nn.Module):
    """64 pixels → [Linear → ReLU] × depth → Linear 10, weights × init_scale (Omnigrok)."""

    def __init__(self, config: DigitsConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d_in = 64
        for _ in range(config.depth):
            layers += [nn.Linear(d_in, config.width), nn.ReLU()]
            d_in = config.width
        # the last activation is a module of its own, `act`: the probes' hidden representation
        self.body = nn.Sequential(*layers[:-1])
        self.act = layers[-1]
        self.out = nn.Linear(config.width, 10)
        with torch.no_grad():
            for param in self.parameters():
                if param.dim() >= 2:
                    # PyTorch's default (Kaiming-uniform) init, then × init_scale: Omnigrok's
                    # knob that puts the run far outside the "Goldilocks zone" of weight norm.
                    param.mul_(config.init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.body(x)))  # (N, 10)


def mse_one_hot(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample MSE against one-hot targets, `(..., N, C)` logits → `(..., N)` (Omnigrok's
    loss; also given to the agent so its loss probes measure the loss being minimized)."""
    one_hot = F.one_hot(targets, logits.shape[-1]).to(logits.dtype)  # (N, C)
    return (logits - one_hot).square().sum(-1)


# -- data ------------------------------------------------------------------------------------


def digits_dataset(n_train: int, *, data_seed: int) -> Dataset:
    """`n_train` random images for training, the rest for test; pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)  # (1797, 64)
    y = torch.tensor(digits.target, dtype=torch.long)  # (1797,)
    gen = torch.Generator().manual_seed(data_seed)
    perm = torch.randperm(len(y), generator=gen)
    tr, te = perm[:n_train], perm[n_train:]
    return Dataset(train_x=x[tr], train_y=y[tr], test_x=x[te], test_y=y[te], p=10, op="digits")


# -- training --------------------------------------------------------------------------------


@dataclasses.dataclass
class FamilyResult:
    """What `train_family` returns (the same fields as `trainer.train.TrainResult`)."""

    config: Any
    history: list[EvalRecord]
    wall_time: float
    steps: int
    stopped_by_agent: bool

    @property
    def t_mem(self) -> int | None:
        return first_step(self.history, "train_acc", 0.99)

    @property
    def t_grok(self) -> int | None:
        return first_step(self.history, "test_acc", 0.90)


@torch.no_grad()
def _evaluate(model: nn.Module, data: Dataset, loss_fn: Callable, step: int) -> EvalRecord:
    was_training = model.training
    model.eval()
    try:
        out = []
        for x, y in ((data.train_x, data.train_y), (data.test_x, data.test_y)):
            logits = model(x)  # (n, C)
            out += [loss_fn(logits, y).mean(), (logits.argmax(-1) == y).float().mean()]
        train_loss, train_acc, _, test_acc = torch.stack(out).tolist()  # sync: one per eval
    finally:
        model.train(was_training)
    return EvalRecord(step, train_loss, train_acc, test_acc)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy, `(N, C)` logits → `(N,)`."""
    return F.cross_entropy(logits, targets, reduction="none")


AnyConfig = RunConfig | TransformerConfig | DigitsConfig | ParityConfig | PermConfig


def loss_of(config: AnyConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The per-sample loss a run minimizes (and its agent measures)."""
    if isinstance(config, DigitsConfig) and config.loss == "mse":
        return mse_one_hot
    return cross_entropy


def build(config: AnyConfig) -> tuple[nn.Module, Dataset, Callable]:
    """Model, data and per-sample loss of a run of any family (global seed already set: the
    model's initialization draws from it, the data split from its own generator)."""
    if isinstance(config, RunConfig):
        data = make_dataset(config.p, config.op, config.frac, data_seed=config.data_seed)
        return build_model(config), data, cross_entropy
    if isinstance(config, TransformerConfig):
        data = make_dataset(config.p, config.op, config.frac, data_seed=config.data_seed)
        return Transformer(config), data, cross_entropy
    if isinstance(config, DigitsConfig):
        data = digits_dataset(config.n_train, data_seed=config.data_seed)
        return DigitsMLP(config), data, loss_of(config)
    if isinstance(config, ParityConfig):
        data = parity_dataset(
            config.n_bits, config.k, config.n_train, config.n_test, data_seed=config.data_seed
        )
        return ParityMLP(config), data, cross_entropy
    data = permutation_dataset(config.n, config.frac, data_seed=config.data_seed)
    model = MLP(
        data.p, d_emb=config.d_emb, d_hidden=config.d_hidden, depth=config.depth,
        init_scale=config.init_scale,
    )  # fmt: skip
    return model, data, cross_entropy


def train_size(config: AnyConfig) -> int:
    """How many training examples `build(config)` gives, read from the config alone (a sweep
    plans each stack's padding from it without building any data)."""
    if isinstance(config, RunConfig | TransformerConfig):
        return n_train_examples(config.p, config.op, config.frac)[0]
    if isinstance(config, DigitsConfig | ParityConfig):
        return config.n_train
    return round(config.frac * math.factorial(config.n) ** 2)  # PermConfig: pairs of S_n


def minibatch_generator(config: Any) -> torch.Generator | None:
    """The private generator a mini-batch run draws its batches from (None: full batch)."""
    if not getattr(config, "batch_size", 0):
        return None
    return torch.Generator().manual_seed(config.seed)


def draw_batch(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """Indices of one mini-batch: `size` draws with replacement from range(n), `(size,)`."""
    return torch.randint(n, (size,), generator=gen)


def train_family(config: Any, *, agent_factory: AgentFactory | None = None) -> FamilyResult:
    """Train one run of any family but the MLP, one step at a time: the loop of
    `trainer.train.train` with the optimizer the config names (`trainer.optim`) and full or
    mini-batches. The reference the stacked path (`trainer.stacked`) is tested against, and
    the naive side of `benchmarks/corpus_throughput.py`."""
    from trainer.optim import make_optimizer

    t0 = time.perf_counter()
    with seeded(config.seed):
        model, data, loss_fn = build(config)
    optimizer, grokfast = make_optimizer(model, config)
    gen = minibatch_generator(config)
    history = [_evaluate(model, data, loss_fn, 0)]
    agent = agent_factory(model, data, config) if agent_factory is not None else None
    step, stopped = 0, False
    try:
        model.train()
        for step in range(1, config.steps + 1):
            optimizer.zero_grad(set_to_none=True)
            x, y = data.train_x, data.train_y
            if gen is not None:
                idx = draw_batch(len(y), config.batch_size, gen)  # (B,)
                x, y = x[idx], y[idx]
            loss = loss_fn(model(x), y).mean()  # () — no sync
            loss.backward()
            if grokfast is not None:
                grokfast()
            optimizer.step()
            if agent is not None and agent.step(step, loss=loss.detach()).should_stop:
                stopped = True
                break
            if step % config.eval_every == 0:
                history.append(_evaluate(model, data, loss_fn, step))
    finally:
        if agent is not None:
            agent.close()
    if history[-1].step != step:
        history.append(_evaluate(model, data, loss_fn, step))
    return FamilyResult(config, history, time.perf_counter() - t0, step, stopped)


# -- the registry ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Family:
    """A model family the sweep can train: its config type, its one-run-at-a-time training
    function, and what the agent needs to know about it (the modulus of the Fourier probe).

    `role` is the default split of its runs ("train": fits the forecaster; "eval": evaluation
    only; a spec may say otherwise); `requires` are config values the family insists on (the
    one-hot family is the MLP with `embedding=False`).
    """

    name: str
    role: str
    config_cls: type
    train: Callable[..., Any]  # (config, *, agent_factory) -> result with .history, .steps
    modulus: Callable[[Any], int | None]
    requires: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def check(self, config: Any) -> None:
        for key, want in self.requires.items():
            if getattr(config, key) != want:
                raise ValueError(f"family {self.name!r} needs {key}={want!r}, got {key}="
                                 f"{getattr(config, key)!r}")  # fmt: skip


def _train_mlp(config: RunConfig, *, agent_factory: AgentFactory | None = None) -> Any:
    return train(config, agent_factory=agent_factory)


def _no_modulus(config: Any) -> None:
    return None


FAMILIES: dict[str, Family] = {
    "mlp": Family("mlp", "train", RunConfig, _train_mlp, lambda c: c.p),
    "onehot": Family("onehot", "train", RunConfig, _train_mlp, lambda c: c.p, {"embedding": False}),
    "transformer": Family("transformer", "eval", TransformerConfig, train_family, lambda c: c.p),
    "digits": Family("digits", "eval", DigitsConfig, train_family, _no_modulus),
    "parity": Family("parity", "train", ParityConfig, train_family, _no_modulus),
    "perm": Family("perm", "train", PermConfig, train_family, _no_modulus),
}
