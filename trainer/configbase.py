"""Shared behaviour of the families' frozen config dataclasses (type checks, JSON round trip,
unknown keys refused by name) and the optimizer options every corpus-v2 family takes."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

# "adamw"; "grokfast" = AdamW on EMA-amplified gradients (Lee et al. 2024, 2405.20233);
# "emb_lr10" = AdamW with the embedding's lr × 10 (seed 003); "sgd" = SGD with momentum and
# (coupled, L2) weight decay.
OPTIMIZERS = ("adamw", "grokfast", "emb_lr10", "sgd")


class _FamilyConfig:
    """Shared behaviour of the families' frozen config dataclasses: type checks, JSON round
    trip, unknown keys refused by name. Subclasses list their int/float/str fields."""

    INTS: ClassVar[tuple[str, ...]] = ()
    FLOATS: ClassVar[tuple[str, ...]] = ()
    STRS: ClassVar[tuple[str, ...]] = ()
    BOOLS: ClassVar[tuple[str, ...]] = ()
    # Fields added after corpus v1, written only when they differ from their default: a v1
    # config then resolves to the same dict, and so to the same run id, as before.
    OMIT_AT_DEFAULT: ClassVar[tuple[str, ...]] = ()

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
        for key in self.BOOLS:
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"{key} must be a bool, got {key}={getattr(self, key)!r}")
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

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)  # type: ignore[call-overload]
        if "betas" in d:
            d["betas"] = list(d["betas"])
        defaults = {f.name: f.default for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        for key in self.OMIT_AT_DEFAULT:
            if d[key] == defaults[key]:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {unknown}")
        return cls(**d)


@dataclasses.dataclass(frozen=True)
class TrainingConfig(_FamilyConfig):
    """The training fields every family but the v1 MLP shares: optimizer, schedule, seeds.

    A family subclasses it, adds its model and task fields, redeclares a field to change its
    default, extends the INTS / FLOATS / STRS tuples and calls ``super().__post_init__()``
    before its own checks. Run ids hash the config with sorted keys, so where a field is
    declared does not change any id.
    """

    lr: float = 1e-3
    wd: float = 1.0
    steps: int = 5000
    seed: int = 0  # global torch seed: model initialization
    data_seed: int = 0  # private generator: the data and its split only
    init_scale: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    eval_every: int = 50
    optimizer: str = "adamw"
    momentum: float = 0.9
    grokfast_alpha: float = 0.98
    grokfast_lamb: float = 2.0
    batch_size: int = 0  # 0 = full batch

    INTS: ClassVar[tuple[str, ...]] = ("steps", "seed", "data_seed", "eval_every", "batch_size")
    FLOATS: ClassVar[tuple[str, ...]] = (
        "lr", "wd", "init_scale", "momentum", "grokfast_alpha", "grokfast_lamb",
    )  # fmt: skip
    STRS: ClassVar[tuple[str, ...]] = ("optimizer",)
    # the optimizer fields a family had not before corpus v2 (see OMIT_AT_DEFAULT)
    V2_OPTIMIZER_FIELDS: ClassVar[tuple[str, ...]] = (
        "optimizer", "momentum", "grokfast_alpha", "grokfast_lamb", "batch_size",
    )  # fmt: skip

    def __post_init__(self) -> None:
        self._check_types()
        if not self.lr > 0:
            self._fail("lr", "> 0")
        if not self.wd >= 0:
            self._fail("wd", ">= 0")
        for key in ("steps", "eval_every"):
            if getattr(self, key) <= 0:
                self._fail(key, "> 0")
        for key in ("seed", "data_seed"):
            if getattr(self, key) < 0:
                self._fail(key, ">= 0")
        if not self.init_scale > 0:
            self._fail("init_scale", "> 0")
        if self.optimizer not in OPTIMIZERS:
            self._fail("optimizer", f"one of {list(OPTIMIZERS)}")
        if not 0 <= self.momentum < 1:
            self._fail("momentum", "in [0, 1)")
        if not 0 <= self.grokfast_alpha < 1:
            self._fail("grokfast_alpha", "in [0, 1)")
        if not self.grokfast_lamb >= 0:
            self._fail("grokfast_lamb", ">= 0")
        if self.batch_size < 0:
            self._fail("batch_size", ">= 0 (0 = full batch)")
