"""Probe sets: the ``(inputs, targets)`` pairs an agent measures on, checked before training."""

from __future__ import annotations

import torch
from torch import nn

from grokwatch.exceptions import ConfigError
from grokwatch.probes.base import measuring

Data = tuple[torch.Tensor, torch.Tensor]


def prepare_probe_set(
    split: str,
    data: Data | None,
    model: nn.Module,
    max_samples: int,
    generator: torch.Generator,
) -> Data | None:
    """Validate ``data`` against ``model`` and keep at most ``max_samples`` rows.

    The rows kept are a fixed subset drawn with ``generator`` (never the global RNG); the
    tensors are moved to the model's device. Raises :class:`ConfigError` naming the problem:
    not a pair of tensors, rows that do not match, targets that are not class indices in
    range, or inputs the model cannot run on.
    """
    if data is None:
        return None
    if not (isinstance(data, tuple | list) and len(data) == 2):
        raise ConfigError(f"{split} must be an (inputs, targets) pair, got {type(data).__name__}")
    x, y = data
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ConfigError(f"{split} inputs and targets must be tensors")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ConfigError(
            f"{split} inputs and targets must have the same non-zero number of rows, "
            f"got inputs {tuple(x.shape)} and targets {tuple(y.shape)}"
        )
    if y.dim() != 1 or y.is_floating_point():
        raise ConfigError(
            f"{split} targets must be a 1-D tensor of class indices, got shape "
            f"{tuple(y.shape)} dtype {y.dtype}"
        )
    if x.shape[0] > max_samples:
        keep = torch.randperm(x.shape[0], generator=generator)[:max_samples]
        x, y = x[keep], y[keep]
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    x, y = x.detach().to(device), y.detach().to(device)
    try:
        with measuring(model):
            out = model(x[:2])
    except Exception as exc:
        raise ConfigError(
            f"the model cannot run on the {split} inputs of shape {tuple(x.shape)}: {exc}"
        ) from exc
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != min(2, len(x)):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"the model must return (batch, classes) logits, got {shape}")
    if int(y.max()) >= out.shape[1] or int(y.min()) < 0:
        raise ConfigError(
            f"{split} targets must lie in [0, {out.shape[1]}), got range "
            f"[{int(y.min())}, {int(y.max())}]"
        )
    return x, y
