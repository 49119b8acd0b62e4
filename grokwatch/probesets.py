"""Probe sets: the ``(inputs, targets)`` pairs an agent measures on, checked before training.

Set-up also watches two forward passes (on 2 and 3 rows) to learn what a model's signature
does not say: the batch axis of its logits and of its hidden representation, and, for models
whose activations are functional (``F.relu`` inside ``forward``), where the hidden
representation is (:func:`locate_layers`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from grokwatch.adapters import Inputs, ModelCall, changed_axis, detect_output_axis
from grokwatch.exceptions import ConfigError
from grokwatch.probes.base import Layout, ProbeSet, measuring

Data = tuple[Any, torch.Tensor]

#: Lowest value of the common activations (ReLU 0, GELU -0.170, SiLU -0.278): the input of a
#: Linear that never goes below it, and reaches 0 or below, is read as an activation's output.
ACTIVATION_FLOOR = -0.2785


def prepare_probe_set(
    split: str,
    data: Data | None,
    model: nn.Module,
    max_samples: int,
    generator: torch.Generator,
) -> ProbeSet | None:
    """Validate ``data`` and keep at most ``max_samples`` rows, on the model's device.

    The rows kept are a fixed subset drawn with ``generator`` (never the global RNG). Raises
    :class:`ConfigError` naming the problem: not a pair, targets that are not 1-D class indices,
    inputs with no batch axis of the targets' length.
    """
    if data is None:
        return None
    if not (isinstance(data, tuple | list) and len(data) == 2):
        raise ConfigError(f"{split} must be an (inputs, targets) pair, got {type(data).__name__}")
    x, y = data
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.is_floating_point() or len(y) == 0:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        dtype = y.dtype if isinstance(y, torch.Tensor) else None
        raise ConfigError(
            f"{split} targets must be a non-empty 1-D tensor of class indices, got {shape} "
            f"dtype {dtype}"
        )
    try:
        inputs = Inputs(x, len(y))
    except ConfigError as exc:
        raise ConfigError(f"{split}: {exc}") from exc
    if not inputs.tensors():
        raise ConfigError(f"{split} inputs hold no tensor, got {type(x).__name__}")
    if len(y) > max_samples:
        keep = torch.randperm(len(y), generator=generator)[:max_samples]
        inputs, y = inputs.take(keep), y[keep]
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    return ProbeSet(inputs.to(device), y.detach().to(device))


@dataclasses.dataclass
class _Seen:
    out: Any = None
    hidden: torch.Tensor | None = None
    linear_inputs: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


def _watch(model: nn.Module, layout: Layout, call: ModelCall, x: Inputs) -> _Seen:
    """One forward recording the hidden layer and the input of every ``nn.Linear``, in order."""
    seen = _Seen()
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):

            def on_linear(_m: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
                if args and isinstance(args[0], torch.Tensor):
                    seen.linear_inputs.pop(name, None)  # keep call order: last call last
                    seen.linear_inputs[name] = args[0]

            handles.append(module.register_forward_pre_hook(on_linear))
    if layout.hidden is not None:
        module = model.get_submodule(layout.hidden)

        def on_hidden(_m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            value = args[0] if layout.hidden_from == "input" and args else out
            if isinstance(value, torch.Tensor):
                seen.hidden = value

        handles.append(module.register_forward_hook(on_hidden))
    try:
        with measuring(model):
            seen.out = call.run(model, x)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def locate_layers(
    model: nn.Module, layout: Layout, call: ModelCall, data: ProbeSet, *, hidden_named: bool
) -> tuple[Layout, ModelCall]:
    """The layout and call completed from two forward passes (2 and 3 rows of ``data``).

    Finds the logits' batch axis (so ``(seq, N, C)`` outputs are read right) and the hidden
    representation's batch axis. When no activation module runs in the forward (and the user
    named none), the hidden representation is the input of the last ``nn.Linear`` called whose
    input looks like an activation's output (never below -0.2785, the minimum of SiLU; GELU's
    is -0.170, ReLU's 0; and reaching 0 or below), else the input of the output layer.
    Raises :class:`ConfigError` naming the shapes when the model cannot run on the inputs or
    returns logits in no known layout.
    """
    rows = (min(2, data.inputs.rows), min(3, data.inputs.rows))
    try:
        small = _watch(model, layout, call, data.inputs.head(rows[0]))
        large = _watch(model, layout, call, data.inputs.head(rows[1]))
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"the model cannot run on inputs {data.inputs.shape()}: {type(exc).__name__}: {exc}. "
            f"A model called as model(a, b) takes a tuple of inputs, model(**batch) a dict; "
            f"otherwise adapt the call: io=ModelIO(forward=lambda model, x: ...)"
        ) from exc
    call = dataclasses.replace(
        call, output_axis=detect_output_axis(call, small.out, large.out, rows)
    )
    logits = call.logits(large.out, rows[1])
    if int(data.targets.max()) >= logits.shape[1] or int(data.targets.min()) < 0:
        raise ConfigError(
            f"targets must lie in [0, {logits.shape[1]}) (the model's {logits.shape[1]} "
            f"classes), got range [{int(data.targets.min())}, {int(data.targets.max())}]"
        )
    if large.hidden is None and not hidden_named:
        name = next(
            (
                n
                for n, t in reversed(large.linear_inputs.items())
                if t.is_floating_point() and ACTIVATION_FLOOR <= float(t.min()) <= 0.0
            ),
            layout.output if layout.output in large.linear_inputs else None,
        )
        layout = dataclasses.replace(layout, hidden=name, hidden_from="input")
        if name is not None:
            small.hidden, large.hidden = small.linear_inputs[name], large.linear_inputs[name]
    if small.hidden is not None and large.hidden is not None:
        axis = 0 if rows[0] == rows[1] else changed_axis(small.hidden.shape, large.hidden.shape)
        if axis is None:
            layout = dataclasses.replace(layout, hidden=None)
        else:
            layout = dataclasses.replace(layout, hidden_axis=axis)
    return layout, call
