"""RunConfig: everything that determines a training run, as frozen, validated, JSON-able data.

The defaults are the seed-000 recipe that groks on a CPU (RESEARCH.md §3): p = 53, half the
pairs for training, AdamW lr 1e-3, weight decay 1, betas (0.9, 0.98), Embedding 128 → 256 → p.
The resolved config is saved as config.json beside every run's outputs.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from trainer.tasks import OPS, is_prime, n_train_examples

OPTIMIZERS = ("adamw", "grokfast", "emb_lr10")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    # task
    p: int = 53
    op: str = "add"
    frac: float = 0.5  # fraction of all pairs used for training
    # optimization (full batch: one step = one pass over the training set)
    lr: float = 1e-3
    wd: float = 1.0  # AdamW decoupled weight decay; 0 → no grokking within budget (§3)
    steps: int = 10_000
    seed: int = 0  # global torch seed: model initialization
    data_seed: int = 0  # private generator: the train/test split only
    # model
    d_emb: int = 128
    d_hidden: int = 256
    depth: int = 1
    init_scale: float = 1.0
    embedding: bool = True
    factorized: bool = True
    betas: tuple[float, float] = (0.9, 0.98)
    eval_every: int = 100
    # optimizer variant: "adamw"; "grokfast" = AdamW on EMA-amplified gradients
    # (Lee et al. 2024, 2405.20233); "emb_lr10" = AdamW with the embedding's lr ×10 (seed 003)
    optimizer: str = "adamw"
    grokfast_alpha: float = 0.98
    grokfast_lamb: float = 2.0
    # execution
    device: str = "cpu"  # "cpu", "cuda", "cuda:N" or "auto" (cuda if available)
    threads: int | None = None  # torch.set_num_threads, process-wide; None leaves it alone

    def __post_init__(self) -> None:
        # JSON has no tuples; accept a list and store the tuple so configs compare equal.
        if isinstance(self.betas, list):
            object.__setattr__(self, "betas", tuple(self.betas))
        self._check_types()

        def fail(key: str, rule: str) -> None:
            raise ValueError(f"{key} must be {rule}, got {key}={getattr(self, key)!r}")

        if self.p < 2:
            fail("p", ">= 2")
        if self.op not in OPS:
            fail("op", f"one of {sorted(OPS)}")
        if self.op == "div" and not is_prime(self.p):
            fail("p", "prime for op 'div' (b⁻¹ mod p must exist for every b ≠ 0)")
        if not 0 < self.frac < 1:
            fail("frac", "in (0, 1)")
        n_train, n = n_train_examples(self.p, self.op, self.frac)
        if not 0 < n_train < n:
            fail("frac", f"such that train and test are both non-empty ({n_train} of {n} pairs)")
        if not self.lr > 0:
            fail("lr", "> 0")
        if not self.wd >= 0:
            fail("wd", ">= 0")
        for key in ("steps", "d_emb", "d_hidden", "eval_every"):
            if getattr(self, key) <= 0:
                fail(key, "> 0")
        for key in ("seed", "data_seed"):
            if getattr(self, key) < 0:
                fail(key, ">= 0")
        if self.depth not in (1, 2):
            fail("depth", "1 or 2")
        if not (self.init_scale > 0 and math.isfinite(self.init_scale)):
            fail("init_scale", "finite and > 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            fail("betas", "two numbers in [0, 1)")
        if self.optimizer not in OPTIMIZERS:
            fail("optimizer", f"one of {list(OPTIMIZERS)}")
        if self.optimizer == "emb_lr10" and not self.embedding:
            fail("optimizer", "'adamw' or 'grokfast' when embedding=False (no embedding)")
        if not 0 <= self.grokfast_alpha < 1:
            fail("grokfast_alpha", "in [0, 1)")
        if not self.grokfast_lamb >= 0:
            fail("grokfast_lamb", ">= 0")
        if not (self.device in ("cpu", "cuda", "auto") or self.device.startswith("cuda:")):
            fail("device", "'cpu', 'cuda', 'cuda:N' or 'auto'")
        if self.threads is not None and self.threads <= 0:
            fail("threads", "None or > 0")

    def _check_types(self) -> None:
        # Types are checked, not coerced: a config from JSON or the command line must already
        # be right, and True silently standing in for 1 (bool is an int) is a bug.
        ints = ("p", "steps", "seed", "data_seed", "d_emb", "d_hidden", "depth", "eval_every")
        floats = ("frac", "lr", "wd", "init_scale", "grokfast_alpha", "grokfast_lamb")
        for key in ints:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{key} must be an int, got {key}={value!r}")
        for key in floats:
            value = getattr(self, key)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"{key} must be a number, got {key}={value!r}")
        for key in ("embedding", "factorized"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"{key} must be a bool, got {key}={getattr(self, key)!r}")
        for key in ("op", "optimizer", "device"):
            if not isinstance(getattr(self, key), str):
                raise ValueError(f"{key} must be a str, got {key}={getattr(self, key)!r}")
        if not isinstance(self.betas, tuple) or not all(
            isinstance(b, int | float) and not isinstance(b, bool) for b in self.betas
        ):
            raise ValueError(f"betas must be a pair of numbers, got betas={self.betas!r}")
        if self.threads is not None and (
            not isinstance(self.threads, int) or isinstance(self.threads, bool)
        ):
            raise ValueError(f"threads must be None or an int, got threads={self.threads!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: the betas tuple becomes a list."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Inverse of to_dict. Unknown keys are refused by name (a typo must not be dropped)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown RunConfig keys: {unknown}")
        return cls(**d)

    def save(self, path: str | Path) -> Path:
        """Write the config as JSON to `path` (a file, or a directory → path/config.json)."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """Read a config written by save (a file, or a directory holding config.json)."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        return cls.from_dict(json.loads(path.read_text()))
