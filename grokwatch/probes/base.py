"""The probe contract: a named measure of a model, computed without side effects.

A probe is a small class with a ``name`` and one ``compute(ctx)`` method. ``compute`` reads the
model through a :class:`ProbeContext` and returns a mapping of measure names to floats (time
series points) or numpy arrays (snapshots for the report, such as a cosine-similarity matrix).

The context does the shared, expensive work once per evaluation: one forward pass over the train
and test probe sets with the hidden and penultimate activations captured. Probes must not touch
the global RNG streams (use :meth:`ProbeContext.generator`), must not mutate parameters,
gradients or optimizer state, and run under ``torch.no_grad()`` with every module in eval mode;
:func:`measuring` saves and restores each module's ``training`` flag.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
import torch
from torch import nn

from grokwatch.adapters import Inputs, ModelCall, as_inputs
from grokwatch.exceptions import ConfigError, ProbeNotApplicable

Status = Literal["ok", "not_applicable", "non_finite", "error"]
Value = float | np.ndarray

ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.LeakyReLU,
    nn.ELU,
    nn.Sigmoid,
)


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """What one probe produced at one step.

    ``values`` are scalar series points (non-finite values are kept, and flagged by
    ``status == "non_finite"``); ``arrays`` are snapshots; ``reason`` explains any status but
    ``"ok"``; ``trace`` is the formatted traceback of an ``"error"``.
    """

    probe: str
    status: Status
    values: Mapping[str, float] = dataclasses.field(default_factory=dict)
    arrays: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    reason: str = ""
    trace: str = dataclasses.field(default="", repr=False, compare=False)


class Probe(abc.ABC):
    """A named progress measure.

    Subclasses set ``name`` and implement :meth:`compute`. ``period`` is how many evaluation
    spacings pass between two computations (1: every evaluation; with ``every=100``, a period
    of 10 is every 1000 steps); costly probes use a larger one.
    Raise :class:`~grokwatch.exceptions.ProbeNotApplicable` when the model lacks what the
    probe needs. Constructor options are keyword-only and stored unmodified under their own
    names, so ``repr`` shows them.
    """

    name: ClassVar[str]
    period: int = 1
    requires: ClassVar[tuple[str, ...]] = ()
    """What the probe needs: any of "embedding", "hidden", "output", "train", "test". An agent
    given this probe by name refuses a model or data set that lacks one."""

    @abc.abstractmethod
    def compute(self, ctx: ProbeContext) -> Mapping[str, Value]:
        """Return measure name -> float (series) or ndarray (snapshot)."""

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({options})"


@dataclasses.dataclass(frozen=True)
class Capture:
    """Outputs of one forward pass with the activations probes need.

    ``hidden`` and ``penultimate`` are flattened to ``(rows, features)`` (features: the last
    axis, or the channel axis of a ``(batch, channels, height, width)`` map); they are ``None``
    when the model has no such layer. The penultimate representation of a sequence is read at
    the position the logits are read at (the last).
    """

    logits: torch.Tensor
    hidden: torch.Tensor | None
    penultimate: torch.Tensor | None


_ACTIVATION_NAMES = ("GELU", "ReLU", "SiLU", "Swish", "Mish", "Activation")


def is_activation(module: nn.Module) -> bool:
    """A torch activation module, or one whose class is named like one (``NewGELUActivation``)."""
    name = type(module).__name__
    return isinstance(module, ACTIVATIONS) or any(part in name for part in _ACTIVATION_NAMES)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the layers that probes need sit in a model (dotted module names).

    The hidden representation is the output of module ``hidden`` (``hidden_from="output"``,
    an activation module) or its input (``"input"``, the input of an ``nn.Linear`` fed by a
    functional activation such as ``F.relu``); ``hidden_axis`` is its batch axis (1 in
    sequence-first models).
    """

    embedding: str | None
    hidden: str | None
    output: str | None
    hidden_from: Literal["output", "input"] = "output"
    hidden_axis: int = 0

    @classmethod
    def discover(
        cls,
        model: nn.Module,
        *,
        embedding: str | None = None,
        hidden: str | None = None,
        output: str | None = None,
        hidden_from: Literal["output", "input"] = "output",
    ) -> Layout:
        """Find the layers by type, or check the names the user insisted on.

        embedding: the first ``nn.Embedding``; hidden: the last activation module (ReLU, GELU,
        ..., or a class named like one); output: the last ``nn.Linear`` (its input is the
        penultimate representation). Models whose activations are functional are completed by
        :func:`grokwatch.probesets.locate_layers`, which watches one forward pass.
        """
        modules = dict(model.named_modules())
        for label, name in (("embedding", embedding), ("hidden", hidden), ("output", output)):
            if name is not None and name not in modules:
                raise ConfigError(
                    f"{label} layer {name!r} is not a module of the model; "
                    f"known modules: {sorted(k for k in modules if k)[:20]}"
                )
        if hidden_from not in ("output", "input"):
            raise ConfigError(f"hidden_from must be 'output' or 'input', got {hidden_from=!r}")
        if embedding is None:
            embedding = next((n for n, m in modules.items() if isinstance(m, nn.Embedding)), None)
        if hidden is None:
            hidden_from = "output"
            hidden = next((n for n, m in reversed(modules.items()) if is_activation(m)), None)
        if output is None:
            output = next(
                (n for n, m in reversed(modules.items()) if isinstance(m, nn.Linear)), None
            )
        return cls(embedding=embedding, hidden=hidden, output=output, hidden_from=hidden_from)


def cross_entropy_per_sample(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy; logits ``(N, C)`` or ``(..., N, C)``."""
    flat = logits.reshape(-1, logits.shape[-1]).float()
    tiled = targets.expand(*logits.shape[:-1]).reshape(-1)
    return nn.functional.cross_entropy(flat, tiled, reduction="none").reshape(logits.shape[:-1])


class ProbeSet(NamedTuple):
    """A probe set on the model's device: inputs for N rows and their N targets."""

    inputs: Inputs
    targets: torch.Tensor


def feature_axis(t: torch.Tensor) -> int:
    """The axis of features: channels of an image-like map ``(B, C, H, W)``, else the last."""
    return 1 if t.dim() >= 4 else t.dim() - 1


def as_rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` as ``(rows, features)`` (see :func:`feature_axis`)."""
    return t.movedim(feature_axis(t), -1).reshape(-1, t.shape[feature_axis(t)])


@contextlib.contextmanager
def measuring(model: nn.Module) -> Iterator[None]:
    """``no_grad`` + eval mode for every module, restoring each module's own flag afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            yield
    finally:
        for module, mode in modes:
            module.training = mode


class ProbeContext:
    """Everything a probe may read at one evaluation, with shared work cached.

    Parameters
    ----------
    model:
        The watched model. Probes never write to it.
    step:
        The training step being measured.
    layout:
        Where the embedding, hidden and output layers are.
    train, test:
        ``(inputs, targets)`` probe sets already on the model's device, or ``None``; inputs may
        be a tensor or :class:`~grokwatch.adapters.Inputs` (several tensors, dicts,
        sequence-first).
    train_losses:
        Recent training-loss values, oldest first (for loss-dynamics probes).
    train_loss_steps:
        The step of each of ``train_losses`` (default: consecutive steps ending at ``step``).
    generator_seed:
        Seed of the private RNGs; the same (seed, step, stream) gives the same draws.
    loss_fn:
        Per-sample loss ``(logits, targets) -> (N,)``; cross-entropy by default.
    modulus:
        The size of Z_p when the embedding rows are residues 0..p-1 (Fourier probe).
    snapshot:
        True at snapshot steps: probes add their arrays (matrices, curves, histograms) only then.
    call:
        How to call the model and read its logits (:class:`~grokwatch.adapters.ModelCall`).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        step: int,
        layout: Layout,
        train: tuple[Any, torch.Tensor] | None = None,
        test: tuple[Any, torch.Tensor] | None = None,
        train_losses: Sequence[float] = (),
        train_loss_steps: Sequence[int] | None = None,
        generator_seed: int = 0,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = cross_entropy_per_sample,
        modulus: int | None = None,
        snapshot: bool = False,
        call: ModelCall | None = None,
    ) -> None:
        self.model = model
        self.step = step
        self.layout = layout
        self.train = (
            None if train is None else ProbeSet(as_inputs(train[0], len(train[1])), train[1])
        )
        self.test = None if test is None else ProbeSet(as_inputs(test[0], len(test[1])), test[1])
        self.train_losses = tuple(train_losses)
        if train_loss_steps is None:
            train_loss_steps = range(step - len(self.train_losses) + 1, step + 1)
        self.train_loss_steps = tuple(train_loss_steps)
        self.loss_fn = loss_fn
        self.modulus = modulus
        self.snapshot = snapshot
        self.call = call or ModelCall()
        self._seed = generator_seed
        self._generators: dict[tuple[torch.device, str], torch.Generator] = {}

    @property
    def device(self) -> torch.device:
        first = next(iter(self.model.parameters()), None)
        return first.device if first is not None else torch.device("cpu")

    def generator(self, device: torch.device | None = None, *, stream: str = "") -> torch.Generator:
        """A private generator seeded from (seed, step, stream); never the global RNG.

        Each ``stream`` (a probe passes its ``name``) gets its own generator, so a probe draws
        the same numbers at a given step whichever other probes ran before it.
        """
        device = torch.device(device or self.device)
        key = (device, stream)
        if key not in self._generators:
            gen = torch.Generator(device=device)
            digest = hashlib.blake2b(f"{self._seed}:{self.step}:{stream}".encode(), digest_size=8)
            gen.manual_seed(int.from_bytes(digest.digest(), "little") % (2**63))
            self._generators[key] = gen
        return self._generators[key]

    def module(self, name: str | None, label: str) -> nn.Module:
        """The module called ``name``, or :class:`ProbeNotApplicable` naming what is missing."""
        if name is None:
            raise ProbeNotApplicable(f"the model has no {label} layer")
        return self.model.get_submodule(name)

    def require(self, split: Literal["train", "test"]) -> ProbeSet:
        data = self.train if split == "train" else self.test
        if data is None:
            raise ProbeNotApplicable(f"no {split} data was given to the agent")
        return data

    @cached_property
    def train_capture(self) -> Capture:
        x, _ = self.require("train")
        return self.forward(x)

    @cached_property
    def test_capture(self) -> Capture:
        x, _ = self.require("test")
        return self.forward(x)

    def capture(self, split: Literal["train", "test"]) -> Capture:
        return self.train_capture if split == "train" else self.test_capture

    def forward(
        self,
        x: Inputs | torch.Tensor,
        *,
        hidden_masks: torch.Tensor | None = None,
        params: Mapping[str, torch.Tensor] | None = None,
    ) -> Capture:
        """One forward pass capturing hidden and penultimate activations.

        With ``hidden_masks`` of shape ``(K, H)``, sub-network k has its hidden activations
        multiplied by ``hidden_masks[k]`` (along the feature axis): K dropout passes in one
        batched forward, returning logits of shape ``(K, N, C)``. Everything before the hidden
        layer is the same in all K sub-networks, so it runs once on the N inputs and the hidden
        representation is expanded to K * N rows along its batch axis; if the model cannot carry
        the larger batch past that point (a residual connection from before the hidden layer, a
        reshape by the input's batch size), the input is tiled K times instead. With ``params``,
        those tensors replace the model's own (``torch.func.functional_call``), so a perturbed
        copy is evaluated without writing to the model.
        """
        inputs = as_inputs(x)
        n = inputs.rows
        if hidden_masks is None:
            out, store = self._run(inputs, None, params, tile=False)
            logits = self.call.logits(out, n)
        else:
            if self.layout.hidden is None:
                raise ProbeNotApplicable("the model has no hidden activation layer to mask")
            k = hidden_masks.shape[0]
            try:
                out, store = self._run(inputs, hidden_masks, params, tile=False)
                logits = self.call.logits(out, k * n)
            except Exception:  # the model needs its own batch size past the hidden layer
                out, store = self._run(inputs, hidden_masks, params, tile=True)
                logits = self.call.logits(out, k * n)
            if "hidden" not in store:
                raise ProbeNotApplicable("the hidden activation layer was not called")
            logits = logits.reshape(k, n, logits.shape[-1])
        hidden = store.get("hidden")
        penultimate = store.get("penultimate")
        if penultimate is not None and penultimate.dim() == 3 and hidden_masks is None:
            axis = self.call.output_axis  # the position the logits are read at
            penultimate = penultimate[:, -1] if axis == 0 else penultimate[-1]
        return Capture(
            logits=logits,
            hidden=None if hidden is None else as_rows(hidden),
            penultimate=None if penultimate is None else as_rows(penultimate),
        )

    def _run(
        self,
        x: Inputs,
        hidden_masks: torch.Tensor | None,
        params: Mapping[str, torch.Tensor] | None,
        *,
        tile: bool,
    ) -> tuple[Any, dict[str, torch.Tensor]]:
        """The hooked forward of :meth:`forward`; ``tile`` repeats the input K times."""
        store: dict[str, torch.Tensor] = {}
        handles: list[torch.utils.hooks.RemovableHandle] = []
        n = x.rows
        k = 1 if hidden_masks is None else hidden_masks.shape[0]
        xin = x.tile(k) if tile and k > 1 else x
        axis = self.layout.hidden_axis

        def masked(t: torch.Tensor) -> torch.Tensor:
            if hidden_masks is None:
                return t
            features = feature_axis(t)
            if t.shape[axis] == n:  # shared prefix: one copy for all K sub-networks
                shaped = t.unsqueeze(axis)  # K axis (of 1) at `axis`, rows after it
            else:
                shaped = t.reshape(*t.shape[:axis], k, t.shape[axis] // k, *t.shape[axis + 1 :])
            view = [1] * shaped.dim()
            view[axis] = k
            view[features + 1 if features >= axis else features] = hidden_masks.shape[-1]
            return (shaped * hidden_masks.reshape(view)).flatten(axis, axis + 1)

        if self.layout.hidden is not None:
            mod = self.model.get_submodule(self.layout.hidden)
            if self.layout.hidden_from == "input":

                def on_hidden_input(_m: nn.Module, args: tuple[Any, ...]) -> Any:
                    if not args or not isinstance(args[0], torch.Tensor):
                        return None
                    store["hidden"] = masked(args[0])
                    return None if hidden_masks is None else (store["hidden"], *args[1:])

                handles.append(mod.register_forward_pre_hook(on_hidden_input))
            else:

                def on_hidden(_m: nn.Module, _i: Any, out: Any) -> Any:
                    if not isinstance(out, torch.Tensor):
                        return None
                    store["hidden"] = masked(out)
                    return None if hidden_masks is None else store["hidden"]

                handles.append(mod.register_forward_hook(on_hidden))
        if self.layout.output is not None:
            out_mod = self.model.get_submodule(self.layout.output)

            def on_output(_m: nn.Module, args: tuple[Any, ...]) -> None:
                if args and isinstance(args[0], torch.Tensor):
                    store["penultimate"] = args[0]

            handles.append(out_mod.register_forward_pre_hook(on_output))
        try:
            with measuring(self.model):
                out = self.call.run(self.model, xin, params)
        finally:
            for handle in handles:
                handle.remove()
        return out, store
