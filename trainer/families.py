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
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from trainer.config import RunConfig
from trainer.tasks import OPS, Dataset, is_prime, make_dataset, n_train_examples
from trainer.train import AgentFactory, EvalRecord, first_step, train

# -- configuration ---------------------------------------------------------------------------


class _FamilyConfig:
    """Shared behaviour of the families' frozen config dataclasses: type checks, JSON round
    trip, unknown keys refused by name. Subclasses list their int/float/str fields."""

    INTS: ClassVar[tuple[str, ...]] = ()
    FLOATS: ClassVar[tuple[str, ...]] = ()
    STRS: ClassVar[tuple[str, ...]] = ()

    def _fail(self, key: str, rule: str) -> None:
        raise ValueError(f"{key} must be {rule}, got {key}={getattr(self, key)!r}")

    def _check_types(self) -> None:
        for key in self.INTS:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{key} must be an int, got {key}={value!r}")
        for key in self.FLOATS:
            value = getattr(self, key)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"{key} must be a number, got {key}={value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{key} must be finite, got {key}={value!r}")
        for key in self.STRS:
            if not isinstance(getattr(self, key), str):
                raise ValueError(f"{key} must be a str, got {key}={getattr(self, key)!r}")
        betas = getattr(self, "betas", None)
        if isinstance(betas, list):  # JSON has no tuples
            object.__setattr__(self, "betas", tuple(betas))
            betas = self.betas
        if betas is not None and not (
            isinstance(betas, tuple)
            and len(betas) == 2
            and all(isinstance(b, int | float) and 0 <= b < 1 for b in betas)
        ):
            raise ValueError(f"betas must be two numbers in [0, 1), got betas={betas!r}")

    def _check_common(self) -> None:
        if not self.lr > 0:  # type: ignore[attr-defined]
            self._fail("lr", "> 0")
        if not self.wd >= 0:  # type: ignore[attr-defined]
            self._fail("wd", ">= 0")
        for key in ("steps", "eval_every"):
            if getattr(self, key) <= 0:
                self._fail(key, "> 0")
        for key in ("seed", "data_seed"):
            if getattr(self, key) < 0:
                self._fail(key, ">= 0")
        if not self.init_scale > 0:  # type: ignore[attr-defined]
            self._fail("init_scale", "> 0")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)  # type: ignore[call-overload]
        if "betas" in d:
            d["betas"] = list(d["betas"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {unknown}")
        return cls(**d)


@dataclasses.dataclass(frozen=True)
class TransformerConfig(_FamilyConfig):
    p: int = 31
    op: str = "add"
    frac: float = 0.5
    lr: float = 1e-3
    wd: float = 1.0
    steps: int = 5000
    seed: int = 0
    data_seed: int = 0
    d_model: int = 64
    n_heads: int = 4
    d_mlp: int = 128
    init_scale: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    eval_every: int = 50

    INTS: ClassVar = (
        "p",
        "steps",
        "seed",
        "data_seed",
        "d_model",
        "n_heads",
        "d_mlp",
        "eval_every",
    )
    FLOATS: ClassVar = ("frac", "lr", "wd", "init_scale")
    STRS: ClassVar = ("op",)

    def __post_init__(self) -> None:
        self._check_types()
        self._check_common()
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
class DigitsConfig(_FamilyConfig):
    n_train: int = 200
    lr: float = 1e-3
    wd: float = 0.05
    steps: int = 20_000
    seed: int = 0
    data_seed: int = 0
    width: int = 200
    depth: int = 2  # hidden layers
    init_scale: float = 8.0
    betas: tuple[float, float] = (0.9, 0.98)
    eval_every: int = 50

    INTS: ClassVar = ("n_train", "steps", "seed", "data_seed", "width", "depth", "eval_every")
    FLOATS: ClassVar = ("lr", "wd", "init_scale")

    def __post_init__(self) -> None:
        self._check_types()
        self._check_common()
        if not 10 <= self.n_train <= DIGITS_IMAGES - 100:
            self._fail("n_train", f"in [10, {DIGITS_IMAGES - 100}] (100 images kept for test)")
        if self.width <= 0:
            self._fail("width", "> 0")
        if self.depth not in (1, 2, 3):
            self._fail("depth", "1, 2 or 3")


DIGITS_IMAGES = 1797  # len(sklearn.datasets.load_digits().target)

# -- models ----------------------------------------------------------------------------------


class Transformer(nn.Module):
    """One attention layer and one ReLU MLP over the tokens [a, b, =]; logits over Z_p.

    Only the "=" position is ever read, and with a single layer nothing else depends on the
    outputs at positions a and b, so the attention query and the MLP are computed for that
    position alone: the same function as the full-sequence model, a third of its cost.
    Module names follow the probe contract: `embed` is the first nn.Embedding (rows 0..p−1
    are residues, row p is "="), `act` the last activation, `out` the last nn.Linear.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        p, d, h = config.p, config.d_model, config.n_heads
        self.p, self.n_heads = p, h
        self.embed = nn.Embedding(p + 1, d)  # residues and the "=" token
        self.pos = nn.Embedding(3, d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.mlp_in = nn.Linear(d, config.d_mlp)
        self.act = nn.ReLU()
        self.mlp_out = nn.Linear(config.d_mlp, d)
        self.out = nn.Linear(d, p, bias=False)  # unembedding
        with torch.no_grad():
            for param in self.parameters():
                if param.dim() >= 2:
                    nn.init.normal_(param, std=config.init_scale / math.sqrt(param.shape[-1]))
                else:
                    nn.init.zeros_(param)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        eq = torch.full((n, 1), self.p, dtype=x.dtype, device=x.device)
        tokens = torch.cat([x, eq], dim=1)  # (N, 3)
        resid = self.embed(tokens) + self.pos.weight  # (N, 3, d)
        q, k, v = self.qkv(resid).chunk(3, dim=-1)  # (N, 3, d) each
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
        z = z + self.mlp_out(self.act(self.mlp_in(z)))  # (N, d)
        return self.out(z)  # (N, p)


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


def build(config: TransformerConfig | DigitsConfig) -> tuple[nn.Module, Dataset, Callable]:
    """Model, data and per-sample loss of an evaluation-only run (global seed already set)."""
    if isinstance(config, TransformerConfig):
        data = make_dataset(config.p, config.op, config.frac, data_seed=config.data_seed)

        def ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits, y, reduction="none")

        return Transformer(config), data, ce
    return (
        DigitsMLP(config),
        digits_dataset(config.n_train, data_seed=config.data_seed),
        mse_one_hot,
    )


def train_family(
    config: TransformerConfig | DigitsConfig, *, agent_factory: AgentFactory | None = None
) -> FamilyResult:
    """Full-batch AdamW on an evaluation-only family; the loop of `trainer.train.train`."""
    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    model, data, loss_fn = build(config)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.wd
    )
    history = [_evaluate(model, data, loss_fn, 0)]
    agent = agent_factory(model, data, config) if agent_factory is not None else None
    step, stopped = 0, False
    try:
        model.train()
        for step in range(1, config.steps + 1):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(data.train_x), data.train_y).mean()  # () — no sync
            loss.backward()
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
    """A model family the sweep can train: its config type, its training function and what
    the agent needs to know about it (the modulus of the Fourier probe, the loss)."""

    name: str
    role: str  # "train": fits the forecaster; "eval": evaluation only
    config_cls: type
    train: Callable[..., Any]  # (config, *, agent_factory) -> result with .history, .steps
    modulus: Callable[[Any], int | None]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None


def _train_mlp(config: RunConfig, *, agent_factory: AgentFactory | None = None) -> Any:
    return train(config, agent_factory=agent_factory)


FAMILIES: dict[str, Family] = {
    "mlp": Family("mlp", "train", RunConfig, _train_mlp, lambda c: c.p),
    "transformer": Family("transformer", "eval", TransformerConfig, train_family, lambda c: c.p),
    "digits": Family("digits", "eval", DigitsConfig, train_family, lambda c: None, mse_one_hot),
}
