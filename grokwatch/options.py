"""The agent's option groups (typed, frozen) and how it reads numbers as users write them."""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Literal

from grokwatch.exceptions import ConfigError


def whole(name: str, value: Any, low: int) -> int:
    """``value`` as an int >= ``low``: ints, numpy integers and whole floats (``3e5``) accepted.

    Raises :class:`ConfigError` naming the value for anything else (``True``, ``2.5``, NaN,
    strings).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be an int >= {low}, got {name}={value!r}")
    if isinstance(value, numbers.Integral):
        out = int(value)
    elif math.isfinite(float(value)) and float(value).is_integer():
        out = int(float(value))
    else:
        raise ConfigError(f"{name} must be a whole number >= {low}, got {name}={value!r}")
    if out < low:
        raise ConfigError(f"{name} must be an int >= {low}, got {name}={value!r}")
    return out


@dataclasses.dataclass(frozen=True)
class Layers:
    """Which modules the probes read, when discovery by type is not what you want.

    Args:
        embedding: an ``nn.Embedding`` whose rows are the tokens (embedding probes).
        hidden: the module whose output (or input, with ``hidden_from="input"``) is the hidden
            representation (sparsity and the two dropout probes). Default: the last activation
            module; without one, the input of the last ``nn.Linear`` that is fed by an
            activation (see ``docs/models.md``).
        output: the output ``nn.Linear``; its input is the penultimate representation.
        hidden_from: ``"output"`` or ``"input"`` of the ``hidden`` module.

    Example:
        A transformer whose MLP applies ``F.gelu`` before ``mlp.proj``::

            Layers(hidden="blocks.1.mlp.proj", hidden_from="input")
    """

    embedding: str | None = None
    hidden: str | None = None
    output: str | None = None
    hidden_from: Literal["output", "input"] = "output"


@dataclasses.dataclass(frozen=True)
class Limits:
    """Bounds on what the agent keeps and measures.

    Args:
        max_samples: rows of each probe set kept (a fixed random subset), default 2048.
        loss_window: steps of training loss kept for the loss-dynamics probe, default 1000
            (a window in steps: a loop that reports its loss every 10 steps keeps 100 values).
        max_history: evaluations kept in :attr:`Agent.history`, default 100 000.
        max_snapshots: snapshots kept in memory, default 64 (the first is always kept).
        snapshot_every: steps between snapshots; default ``10 * every``, or when the agent
            picks the cadence, at steps 1000, 2000, 4000, 8000, ... (and always at ``t_mem``,
            ``t_grok`` and :meth:`Agent.close`).
    """

    max_samples: int = 2048
    loss_window: int = 1000
    max_history: int = 100_000
    max_snapshots: int = 64
    snapshot_every: int | None = None

    def __post_init__(self) -> None:
        for name, low in (
            ("max_samples", 1),
            ("loss_window", 8),
            ("max_history", 1),
            ("max_snapshots", 1),
        ):
            object.__setattr__(self, name, whole(name, getattr(self, name), low))
        if self.snapshot_every is not None:
            object.__setattr__(
                self, "snapshot_every", whole("snapshot_every", self.snapshot_every, 1)
            )
