"""How the agent calls a model and reads its logits, whatever the model's interface.

The agent measures on probe sets ``(inputs, targets)``: ``targets`` are ``N`` class indices and
``inputs`` is what the model takes for those ``N`` rows, in one of the common forms:

- a tensor, batch-first ``(N, ...)`` or sequence-first ``(S, N)`` / ``(S, N, ...)``;
- a tuple of tensors, for models called as ``model(a, b)``;
- a dict of tensors, for models called as ``model(**batch)`` (Hugging Face ``input_ids``,
  ``attention_mask``, ...).

Each tensor's batch axis is the axis of length ``N`` (axis 0 first, then axis 1). The model's
return value is read as logits without an adapter when it is a tensor, an object with
``.logits`` (a Hugging Face ``ModelOutput``), a dict with ``"logits"`` or a tuple whose first
item is a tensor; logits of a sequence, ``(N, S, C)`` or ``(S, N, C)``, are read at the last
position. Anything else takes a :class:`ModelIO` adapter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from grokwatch.exceptions import ConfigError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class ModelIO:
    """Adapters between the probe sets and a model with an unusual interface.

    Args:
        inputs: ``inputs(x) -> args`` turns the probe-set inputs (a row subset, in the form they
            were given) into the model's arguments: a tuple is passed as ``model(*args)``, a
            dict as ``model(**args)``, anything else as ``model(args)``.
        outputs: ``outputs(out) -> logits`` reads ``(rows, classes)`` logits from what the model
            returned (``(rows, seq, classes)`` is still read at the last position).
        forward: ``forward(model, x) -> out`` replaces the call altogether (then ``inputs`` is
            not used); ``out`` is read as above or by ``outputs``.
        loss_fn: per-sample loss ``(logits (rows, C), targets (rows,)) -> (rows,)`` that the
            run minimizes. Default: the agent finds cross-entropy or MSE on one-hot targets
            from the training loss the loop reports (:mod:`grokwatch.losses`).

    Example:
        A sequence-first model that returns ``(logits, state)``, read at its last position
        without any adapter; one whose logits sit in ``out["scores"]``::

            io = ModelIO(outputs=lambda out: out["scores"])
    """

    inputs: Callable[[Any], Any] | None = None
    outputs: Callable[[Any], torch.Tensor] | None = None
    forward: Callable[[nn.Module, Any], Any] | None = None
    loss_fn: LossFn | None = None

    def __post_init__(self) -> None:
        for name in ("inputs", "outputs", "forward", "loss_fn"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConfigError(f"ModelIO.{name} must be callable, got {value!r}")


def _shape(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return str(tuple(value.shape))
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r}: {_shape(v)}" for k, v in value.items()) + "}"
    if isinstance(value, tuple | list):
        return "(" + ", ".join(_shape(v) for v in value) + ")"
    return type(value).__name__


class Inputs:
    """Model inputs for ``rows`` probe rows, each tensor with its own batch axis.

    ``value`` is a tensor, a tuple/list of inputs or a dict of inputs; non-tensor leaves are
    passed through unchanged. Raises :class:`ConfigError` naming the shapes when a tensor has
    no axis of length ``rows``.
    """

    def __init__(self, value: Any, rows: int, axes: Any = None) -> None:
        self.value = value
        self.rows = rows
        self.axes = axes if axes is not None else self._find_axes(value, rows)

    @classmethod
    def _find_axes(cls, value: Any, rows: int) -> Any:
        if isinstance(value, torch.Tensor):
            if value.dim() >= 1 and value.shape[0] == rows:
                return 0
            if value.dim() >= 2 and value.shape[1] == rows:
                return 1  # sequence-first
            raise ConfigError(
                f"inputs {_shape(value)} have no batch axis of length {rows} (the number of "
                f"targets); give them batch-first (N, ...) or sequence-first (S, N, ...), or "
                f"adapt them: io=ModelIO(forward=lambda model, x: model(...))"
            )
        if isinstance(value, Mapping):
            return {k: cls._find_axes(v, rows) for k, v in value.items()}
        if isinstance(value, tuple | list):
            return tuple(cls._find_axes(v, rows) for v in value)
        return None

    def _map(self, fn: Callable[[torch.Tensor, int], torch.Tensor], rows: int) -> Inputs:
        def walk(value: Any, axes: Any) -> Any:
            if isinstance(value, torch.Tensor):
                return fn(value, axes)
            if isinstance(value, Mapping):
                return {k: walk(v, axes[k]) for k, v in value.items()}
            if isinstance(value, tuple | list):
                return type(value)(walk(v, a) for v, a in zip(value, axes, strict=True))
            return value

        return Inputs(walk(self.value, self.axes), rows, self.axes)

    def tensors(self) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []

        def keep(t: torch.Tensor, _axis: int) -> torch.Tensor:
            out.append(t)
            return t

        self._map(keep, self.rows)
        return out

    @property
    def device(self) -> torch.device:
        first = next(iter(self.tensors()), None)
        return first.device if first is not None else torch.device("cpu")

    def take(self, index: torch.Tensor) -> Inputs:
        """The rows ``index`` (a 1-D index tensor), in that order."""
        return self._map(lambda t, a: t.index_select(a, index.to(t.device)), len(index))

    def head(self, n: int) -> Inputs:
        return self._map(lambda t, a: t.narrow(a, 0, n), n)

    def tile(self, k: int) -> Inputs:
        """``k`` copies of the rows along each batch axis, copy-major (row ``c * rows + i``)."""
        return self._map(lambda t, a: torch.cat([t] * k, dim=a), k * self.rows)

    def to(self, device: torch.device) -> Inputs:
        return self._map(lambda t, _a: t.detach().to(device), self.rows)

    def shape(self) -> str:
        return _shape(self.value)


def as_inputs(x: Inputs | torch.Tensor | Any, rows: int | None = None) -> Inputs:
    """``x`` itself if already :class:`Inputs`, else wrapped (batch axes found from ``rows``)."""
    if isinstance(x, Inputs):
        return x
    if rows is None:
        first = x if isinstance(x, torch.Tensor) else Inputs(x, 0, axes=0).tensors()[0]
        rows = first.shape[0]
    return Inputs(x, rows)


class _Call(nn.Module):
    """Wraps ``forward(model, x)`` so ``torch.func.functional_call`` can swap the weights."""

    def __init__(self, model: nn.Module, forward: Callable[[nn.Module, Any], Any]) -> None:
        super().__init__()
        self.model = model
        self._forward = forward

    def forward(self, x: Any) -> Any:
        return self._forward(self.model, x)


@dataclasses.dataclass(frozen=True)
class ModelCall:
    """One way to run a model on :class:`Inputs` and read ``(rows, classes)`` logits.

    ``output_axis`` is the batch axis of 3-D logits (0: ``(N, S, C)``, 1: ``(S, N, C)``), found
    by :func:`detect_output_axis`.
    """

    io: ModelIO = ModelIO()
    output_axis: int = 0

    def run(
        self,
        model: nn.Module,
        x: Inputs,
        params: Mapping[str, torch.Tensor] | None = None,
    ) -> Any:
        """The model's raw return value; with ``params``, those tensors replace its own."""
        if self.io.forward is not None:
            if params is None:
                return self.io.forward(model, x.value)
            wrapper = _Call(model, self.io.forward)
            renamed = {f"model.{k}": v for k, v in params.items()}
            return torch.func.functional_call(wrapper, renamed, (x.value,))
        args = self.io.inputs(x.value) if self.io.inputs is not None else x.value
        positional: tuple[Any, ...] = ()
        keywords: dict[str, Any] = {}
        if isinstance(args, Mapping):
            keywords = dict(args)
        elif isinstance(args, tuple | list):
            positional = tuple(args)
        else:
            positional = (args,)
        if params is None:
            return model(*positional, **keywords)
        return torch.func.functional_call(model, dict(params), positional, keywords)

    def raw_logits(self, out: Any) -> torch.Tensor:
        """The logits tensor in what the model returned, before any reshaping."""
        if self.io.outputs is not None:
            out = self.io.outputs(out)
        elif not isinstance(out, torch.Tensor):
            if isinstance(getattr(out, "logits", None), torch.Tensor):
                out = out.logits
            elif isinstance(out, Mapping) and isinstance(out.get("logits"), torch.Tensor):
                out = out["logits"]
            elif isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
                out = out[0]
        if not isinstance(out, torch.Tensor):
            raise ConfigError(
                f"cannot find logits in the model's {type(out).__name__} output; read them with "
                f"io=ModelIO(outputs=lambda out: ...)"
            )
        return out

    def logits(self, out: Any, rows: int) -> torch.Tensor:
        """``(rows, classes)`` logits: sequence logits are read at the last position."""
        logits = self.raw_logits(out)
        if logits.dim() == 3:
            logits = logits[:, -1] if self.output_axis == 0 else logits[-1]
        if logits.dim() != 2 or logits.shape[0] != rows:
            raise ConfigError(
                f"the model returned logits of shape {tuple(self.raw_logits(out).shape)} for "
                f"{rows} inputs; expected (N, classes), (N, seq, classes) or (seq, N, classes). "
                f"Read them with io=ModelIO(outputs=lambda out: ...) returning (N, classes)"
            )
        return logits


def changed_axis(small: torch.Size, large: torch.Size) -> int | None:
    """The one axis whose length differs between two shapes of the same rank, else ``None``."""
    if len(small) != len(large):
        return None
    diff = [i for i, (a, b) in enumerate(zip(small, large, strict=True)) if a != b]
    return diff[0] if len(diff) == 1 else None


def detect_output_axis(call: ModelCall, small: Any, large: Any, rows: tuple[int, int]) -> int:
    """Batch axis of the logits, from two outputs of ``rows[0]`` and ``rows[1]`` inputs."""
    a, b = call.raw_logits(small), call.raw_logits(large)
    axis = changed_axis(a.shape, b.shape)
    if rows[0] == rows[1] or a.dim() == 2:
        axis = 0
    if axis is None or axis > 1 or a.dim() not in (2, 3):
        raise ConfigError(
            f"the model returned logits of shapes {tuple(a.shape)} and {tuple(b.shape)} for "
            f"{rows[0]} and {rows[1]} inputs: no batch axis found. Expected (N, classes), "
            f"(N, seq, classes) or (seq, N, classes); read them with "
            f"io=ModelIO(outputs=lambda out: ...) returning (N, classes)"
        )
    return axis
