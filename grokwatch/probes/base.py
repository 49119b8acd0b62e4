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
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

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
    ``"ok"``.
    """

    probe: str
    status: Status
    values: Mapping[str, float] = dataclasses.field(default_factory=dict)
    arrays: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    reason: str = ""


class Probe(abc.ABC):
    """A named progress measure.

    Subclasses set ``name`` and implement :meth:`compute`. ``period`` is how many evaluations
    pass between two computations (1: every evaluation); costly snapshot probes use a larger one.
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

    ``hidden`` and ``penultimate`` are flattened to ``(rows, features)``; they are ``None`` when
    the model has no such layer.
    """

    logits: torch.Tensor
    hidden: torch.Tensor | None
    penultimate: torch.Tensor | None


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the layers that probes need sit in a model (dotted module names)."""

    embedding: str | None
    hidden: str | None
    output: str | None

    @classmethod
    def discover(
        cls,
        model: nn.Module,
        *,
        embedding: str | None = None,
        hidden: str | None = None,
        output: str | None = None,
    ) -> Layout:
        """Find the layers by type, or check the names the user insisted on.

        embedding: the first ``nn.Embedding``; hidden: the last activation module (ReLU, GELU,
        ...); output: the last ``nn.Linear`` (its input is the penultimate representation).
        """
        modules = dict(model.named_modules())
        for label, name in (("embedding", embedding), ("hidden", hidden), ("output", output)):
            if name is not None and name not in modules:
                raise ConfigError(
                    f"{label} layer {name!r} is not a module of the model; "
                    f"known modules: {sorted(k for k in modules if k)[:20]}"
                )
        if embedding is None:
            embedding = next((n for n, m in modules.items() if isinstance(m, nn.Embedding)), None)
        if hidden is None:
            hidden = next(
                (n for n, m in reversed(modules.items()) if isinstance(m, ACTIVATIONS)), None
            )
        if output is None:
            output = next(
                (n for n, m in reversed(modules.items()) if isinstance(m, nn.Linear)), None
            )
        return cls(embedding=embedding, hidden=hidden, output=output)


def cross_entropy_per_sample(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy; logits ``(N, C)`` or ``(..., N, C)``."""
    flat = logits.reshape(-1, logits.shape[-1]).float()
    tiled = targets.expand(*logits.shape[:-1]).reshape(-1)
    return nn.functional.cross_entropy(flat, tiled, reduction="none").reshape(logits.shape[:-1])


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
        ``(inputs, targets)`` probe sets already on the model's device, or ``None``.
    train_losses:
        Recent training-loss values, oldest first (for loss-dynamics probes).
    generator_seed:
        Seed of the private RNGs; the same (seed, step, stream) gives the same draws.
    loss_fn:
        Per-sample loss ``(logits, targets) -> (N,)``; cross-entropy by default.
    modulus:
        The size of Z_p when the embedding rows are residues 0..p-1 (Fourier probe).
    snapshot:
        True at snapshot steps: probes add their arrays (matrices, curves, histograms) only then.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        step: int,
        layout: Layout,
        train: tuple[torch.Tensor, torch.Tensor] | None = None,
        test: tuple[torch.Tensor, torch.Tensor] | None = None,
        train_losses: Sequence[float] = (),
        generator_seed: int = 0,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = cross_entropy_per_sample,
        modulus: int | None = None,
        snapshot: bool = False,
    ) -> None:
        self.model = model
        self.step = step
        self.layout = layout
        self.train = train
        self.test = test
        self.train_losses = tuple(train_losses)
        self.loss_fn = loss_fn
        self.modulus = modulus
        self.snapshot = snapshot
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

    def require(self, split: Literal["train", "test"]) -> tuple[torch.Tensor, torch.Tensor]:
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
        x: torch.Tensor,
        *,
        hidden_masks: torch.Tensor | None = None,
        params: Mapping[str, torch.Tensor] | None = None,
    ) -> Capture:
        """One forward pass capturing hidden and penultimate activations.

        With ``hidden_masks`` of shape ``(K, H)``, sub-network k has its hidden activations
        multiplied by ``hidden_masks[k]``: K dropout passes in one batched forward, returning
        logits of shape ``(K, N, C)``. Everything before the hidden layer is the same in all K
        sub-networks, so it runs once on the N inputs and the hidden output is expanded to K * N
        rows; if the model cannot carry the larger batch past that point (a residual connection
        from before the hidden layer, a reshape by the input's batch size), the input is tiled
        K times instead. With ``params``, those tensors replace the model's own
        (``torch.func.functional_call``), so a perturbed copy is evaluated without writing to
        the model.
        """
        if hidden_masks is None:
            logits, store = self._run(x, None, params, tile=False)
        else:
            if self.layout.hidden is None:
                raise ProbeNotApplicable("the model has no hidden activation layer to mask")
            k, n = hidden_masks.shape[0], x.shape[0]
            try:
                logits, store = self._run(x, hidden_masks, params, tile=False)
                shared = logits.shape[0] == k * n
            except Exception:  # the model needs its own batch size past the hidden layer
                shared = False
            if not shared:
                logits, store = self._run(x, hidden_masks, params, tile=True)
            if "hidden" not in store:
                raise ProbeNotApplicable("the hidden activation layer was not called")
            logits = logits.reshape(k, n, *logits.shape[1:])

        def flat(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.reshape(-1, t.shape[-1])

        return Capture(
            logits=logits,
            hidden=flat(store.get("hidden")),
            penultimate=flat(store.get("penultimate")),
        )

    def _run(
        self,
        x: torch.Tensor,
        hidden_masks: torch.Tensor | None,
        params: Mapping[str, torch.Tensor] | None,
        *,
        tile: bool,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The hooked forward of :meth:`forward`; ``tile`` repeats the input K times."""
        store: dict[str, torch.Tensor] = {}
        handles: list[torch.utils.hooks.RemovableHandle] = []
        n = x.shape[0]
        k = 1 if hidden_masks is None else hidden_masks.shape[0]
        xin = x.repeat(k, *([1] * (x.dim() - 1))) if tile and k > 1 else x
        if self.layout.hidden is not None:
            mod = self.model.get_submodule(self.layout.hidden)

            def on_hidden(_m: nn.Module, _i: Any, out: torch.Tensor) -> torch.Tensor | None:
                if hidden_masks is not None:
                    if out.shape[0] == n:  # shared prefix: one copy for all K sub-networks
                        shaped = out.unsqueeze(0)  # (1, N, ..., H)
                    else:
                        shaped = out.reshape(k, -1, *out.shape[1:])  # (K, N, ..., H)
                    view = (k,) + (1,) * (shaped.dim() - 2) + (hidden_masks.shape[-1],)
                    out = (shaped * hidden_masks.reshape(view)).flatten(0, 1)  # (K * N, ..., H)
                store["hidden"] = out
                return out if hidden_masks is not None else None

            handles.append(mod.register_forward_hook(on_hidden))
        if self.layout.output is not None:
            out_mod = self.model.get_submodule(self.layout.output)

            def on_output(_m: nn.Module, args: tuple[Any, ...]) -> None:
                if args and isinstance(args[0], torch.Tensor):
                    store["penultimate"] = args[0]

            handles.append(out_mod.register_forward_pre_hook(on_output))
        try:
            with measuring(self.model):
                if params is None:
                    logits = self.model(xin)
                else:
                    logits = torch.func.functional_call(self.model, dict(params), (xin,))
        finally:
            for handle in handles:
                handle.remove()
        return logits, store
