"""The costliest probes of a stack's agents, computed for all its runs in one batched forward.

Every run of a stack (`trainer.stacked`) keeps its own `grokwatch.Agent`, and each agent
measures its own model: at an evaluation, 16 agents run 16 sets of forwards. Three probes are
most of that cost, because each is a forward of many variants of the model over the test set:
Monte Carlo dropout (16 masked sub-networks), the dropout robustness curve (40) and circuit
complexity (one copy with weights knocked out). In a transformer they were 85 % of the agent's
time: its hidden layer feeds a residual stream, so the library runs the whole model once per
mask.

Here they are computed once per evaluation for the whole stack, by a `vmap` over the runs'
stacked parameters of a template model. The masks multiply the hidden activation along a new
leading axis, so everything before the hidden layer runs once and only the layers after it (a
residual add, a LayerNorm, the output layer) see K copies; when the hidden activation goes
straight into the output layer (the MLPs), the masks scale the output weights' columns instead
and no copy is made at all. The per-run values are then written with the library's own formulas
(`grokwatch.probes.dropout`, `grokwatch.probes.circuit`) on each run's own rows. Each agent
keeps the three probes by name, period and options (:class:`StackedProbe` stands in for each);
the masks and knocked-out weights come from each agent's private generator exactly as the
library draws them, so only the float rounding of the forward can differ from an agent
measuring alone (the tolerance: docs/corpus.md, `tests/trainer/test_trainer_stacked_probes.py`).
Nothing here feeds back into training, and the loss and accuracies that label a run (the
`loss_accuracy` probe) are still measured by each agent on its own model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from grokwatch import Agent
from grokwatch.probes import Probe, ProbeContext
from grokwatch.probes.base import Value
from grokwatch.probes.circuit import CircuitComplexity, softmax_kl
from grokwatch.probes.dropout import ROBUSTNESS_RATES, DropoutRobustness, MCDropout, keep_masks

#: The built-in probes computed for the whole stack (an agent's own instances of these kinds).
KINDS = (MCDropout, DropoutRobustness, CircuitComplexity)
BATCHED = tuple(kind.name for kind in KINDS)
#: Floats of the widest intermediate (runs × masks × rows × width) one chunk of runs may hold.
CHUNK_FLOATS = 1 << 24


class StackedProbe(Probe):
    """Stands in for one of an agent's built-in probes (same name, period and needs): its
    values come from the stack's batched computation (:class:`StackProbes`)."""

    def __init__(self, original: Probe, stack: StackProbes, run_id: str) -> None:
        self.name = original.name  # type: ignore[misc]  # an instance attribute, as a subclass would
        self.period = original.period
        self.requires = original.requires  # type: ignore[misc]
        self._stack, self._run_id = stack, run_id

    def compute(self, ctx: ProbeContext) -> Mapping[str, Value]:
        return self._stack.values(self._run_id, self.name, ctx.step, snapshot=ctx.snapshot)


def _pad(rows: Sequence[torch.Tensor], n: int) -> torch.Tensor:
    """`(n_i, ...)` tensors as `(R, n, ...)`, padded with copies of row 0 (masked out later)."""
    return torch.stack([torch.cat([r, r[:1].expand(n - len(r), *r.shape[1:])]) for r in rows])


class StackProbes:
    """The batched probes of one stack: :meth:`attach` to its agents, :meth:`at` before each
    evaluation step with the stacked parameters, :meth:`keep` when runs leave the stack.

    Only models whose hidden layer is an activation module's output (``Layout.hidden_from ==
    "output"``) and whose probe sets are plain tensors are batched; :func:`supported` says so.
    """

    def __init__(self, template: nn.Module, agents: Sequence[Agent]) -> None:
        first = agents[0]
        self.template = template
        self.layout = first.layout
        self.ids = [a.run_id for a in agents]
        self.seeds = [a._seed for a in agents]
        self.options = {p.name: p for p in first.probes if isinstance(p, KINDS)}
        tests = [a._test for a in agents if a._test is not None]
        if len(tests) != len(agents):
            raise ValueError("every agent of a stack needs test data (see supported())")
        counts = [len(t.targets) for t in tests]
        n = max(counts)
        self.x = _pad([t.inputs.value for t in tests], n)  # (R, N, ...)
        self.y = _pad([t.targets for t in tests], n)  # (R, N)
        self.counts = torch.tensor(counts)  # (R,)
        self.valid = torch.arange(n)[None, :] < self.counts[:, None]  # (R, N)
        self.direct = _feeds_output(template, self.x[0, :1], self.layout.hidden, self.layout.output)
        self.params: dict[str, torch.Tensor] = {}
        self.step = -1
        self._cache: dict[str, dict[str, dict[str, Value]]] = {}  # probe → run → values

    @staticmethod
    def supported(agents: Sequence[Agent]) -> bool:
        first = agents[0]
        layout = first.layout
        tensors = all(
            a._test is not None and isinstance(a._test.inputs.value, torch.Tensor) for a in agents
        )
        return (
            tensors
            and layout.hidden is not None
            and layout.hidden_from == "output"
            and layout.hidden_axis == 0
            and all(a.layout == layout for a in agents)
        )

    def attach(self, agents: Sequence[Agent]) -> None:
        """Swap each agent's batched probes for stand-ins (before its first step)."""
        for agent in agents:
            agent.probes = [
                StackedProbe(p, self, agent.run_id) if isinstance(p, KINDS) else p
                for p in agent.probes
            ]

    def at(self, step: int, params: Mapping[str, torch.Tensor]) -> None:
        """The stack's parameters `name → (R, ...)` at `step`; values are computed on demand."""
        self.step, self.params = step, {k: v.detach() for k, v in params.items()}
        self._cache.clear()

    def keep(self, index: torch.Tensor) -> None:
        """The stack shrank to the runs `index` (in that order)."""
        keep = index.tolist()
        self.ids = [self.ids[i] for i in keep]
        self.seeds = [self.seeds[i] for i in keep]
        self.x, self.y = self.x[index], self.y[index]
        self.counts, self.valid = self.counts[index], self.valid[index]

    # -- the values ----------------------------------------------------------------------------

    def values(self, run_id: str, name: str, step: int, *, snapshot: bool) -> dict[str, Value]:
        """Run `run_id`'s values of probe `name` at `step`, computed with every run of the
        stack that has not got them yet — except a dropout-robustness snapshot, computed for
        the run alone (each run's snapshot steps are its own: they follow its events)."""
        if step != self.step:
            raise RuntimeError(f"probe {name!r} asked at step {step}, the stack is at {self.step}")
        cache = self._cache.setdefault(name, {})
        if run_id not in cache:
            if snapshot and name == DropoutRobustness.name:
                runs = [self.ids.index(run_id)]
            else:
                runs = [i for i, r in enumerate(self.ids) if r not in cache]
            compute = {
                MCDropout.name: self._mc_dropout,
                DropoutRobustness.name: self._robustness,
                CircuitComplexity.name: self._circuit,
            }[name]
            cache.update(zip([self.ids[i] for i in runs], compute(self._view(runs)), strict=True))
        out = dict(cache[run_id])
        if not snapshot:  # arrays only at snapshots, as the library's probes
            out = {k: v for k, v in out.items() if not isinstance(v, np.ndarray)}
        return out

    def _view(self, runs: list[int]) -> _View:
        index = torch.tensor(runs)
        return _View(
            params={k: v[index] for k, v in self.params.items()},
            x=self.x[index],
            y=self.y[index],
            valid=self.valid[index],
            counts=self.counts[index],
            seeds=[self.seeds[i] for i in runs],
        )

    def _generator(self, seed: int, stream: str) -> torch.Generator:
        """The generator the library's probe draws from at this step (seed, step, stream)."""
        ctx = ProbeContext(self.template, step=self.step, layout=self.layout, generator_seed=seed)
        return ctx.generator(self.y.device, stream=stream)

    def _width(self, v: _View) -> int:
        """The width of the hidden layer (one row of one run through the model)."""
        module = self.template.get_submodule(self.layout.hidden or "")
        seen: list[int] = []
        handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out.shape[-1]))
        try:
            self._eval(lambda p, x: functional_call(self.template, p, (x,)),
                       {k: t[0] for k, t in v.params.items()}, v.x[0, :1])  # fmt: skip
        finally:
            handle.remove()
        return seen[-1]

    def _eval(self, fn: Callable[..., torch.Tensor], *args: Any) -> torch.Tensor:
        """`fn(*args)` in eval mode without gradients (each module's mode restored)."""
        was = [(m, m.training) for m in self.template.modules()]
        self.template.eval()
        try:
            with torch.no_grad():
                return fn(*args)
        finally:
            for module, mode in was:
                module.training = mode

    def _masked_predictions(self, v: _View, masks: torch.Tensor) -> torch.Tensor:
        """Arg-max classes `(R, K, N)` of every run with its hidden activation × its masks
        `(R, K, H)`."""
        if self.direct is not None:
            return self._masked_output_layer(v, masks, *self.direct)
        hidden = self.template.get_submodule(self.layout.hidden or "")
        k = masks.shape[1]

        def one(p: dict[str, torch.Tensor], x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
            def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> torch.Tensor:
                return out * m[:, None, :]  # (N, H) → (K, N, H): one copy per mask

            handle = hidden.register_forward_hook(hook)
            try:
                logits = functional_call(self.template, p, (x,))  # (K, N, C)
            finally:
                handle.remove()
            return logits.expand(k, *logits.shape[-2:]).argmax(-1)  # (K, N)

        chunk = max(1, CHUNK_FLOATS // (k * v.x.shape[1] * masks.shape[-1]))
        return self._eval(vmap(one, chunk_size=chunk), v.params, v.x, masks)

    def _masked_output_layer(
        self, v: _View, masks: torch.Tensor, weight: str, bias: str | None
    ) -> torch.Tensor:
        """:meth:`_masked_predictions` when the hidden activation is the output layer's input:
        (h ⊙ m) Wᵀ + b = h (W ⊙ m)ᵀ + b, so the K masks scale the output weights' columns and
        the hidden activations `(R, N, H)` go through one matmul with K·C columns, never
        copied K times (the same products, rounded in another order)."""
        hidden = self._hidden(v)  # (R, N, H)
        w = v.params[weight]  # (R, C, H)
        runs, k, c = w.shape[0], masks.shape[1], w.shape[1]
        chunk = max(1, CHUNK_FLOATS // (k * hidden.shape[1] * max(c, hidden.shape[2])))
        out = []
        for lo in range(0, runs, chunk):
            sl = slice(lo, lo + chunk)
            scaled = (w[sl, None] * masks[sl, :, None, :]).flatten(1, 2)  # (r, K·C, H)
            logits = torch.bmm(hidden[sl], scaled.transpose(1, 2))  # (r, N, K·C)
            logits = logits.unflatten(2, (k, c))  # (r, N, K, C)
            if bias is not None:
                logits = logits + v.params[bias][sl, None, None, :]
            out.append(logits.argmax(-1).transpose(1, 2))  # (r, K, N)
        return torch.cat(out)

    def _hidden(self, v: _View) -> torch.Tensor:
        """The hidden activations `(R, N, H)` of every run (one forward)."""
        module = self.template.get_submodule(self.layout.hidden or "")

        def one(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            seen: list[torch.Tensor] = []
            handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out))
            try:
                functional_call(self.template, p, (x,))
            finally:
                handle.remove()
            return seen[-1]

        return self._eval(vmap(one), v.params, v.x)

    @staticmethod
    def _accuracy(v: _View, predictions: torch.Tensor) -> torch.Tensor:
        """`(R, K)` float64: each run's accuracy on its own rows under each mask, as
        `grokwatch.probes.performance.accuracy` (a sum of 0/1 over its rows, / its rows)."""
        hit = (predictions == v.y[:, None, :]) & v.valid[:, None, :]  # (R, K, N)
        return hit.double().sum(-1) / v.counts[:, None].double()

    def _masks(self, v: _View, name: str, rates: torch.Tensor) -> torch.Tensor:
        """`(R, K, H)`: each run's masks, drawn from its own generator as the library does."""
        width = self._width(v)
        return torch.stack([keep_masks(rates, width, self._generator(s, name)) for s in v.seeds])

    def _mc_dropout(self, v: _View) -> list[dict[str, Value]]:
        probe = self.options[MCDropout.name]
        assert isinstance(probe, MCDropout)
        rates = torch.full((probe.passes,), float(probe.rate), device=v.y.device)
        accs = self._accuracy(v, self._masked_predictions(v, self._masks(v, probe.name, rates)))
        out: list[dict[str, Value]] = []
        for acc in accs:  # (K,): MCDropout.compute from here on
            shifted = acc - acc[0]  # equal passes give a variance of exactly 0
            var = (shifted - shifted.mean()).square().mean()
            mean, variance = torch.stack([acc[0] + shifted.mean(), var]).tolist()
            out.append({"mc_dropout_accuracy_mean": mean, "mc_dropout_accuracy_var": variance})
        return out

    def _robustness(self, v: _View) -> list[dict[str, Value]]:
        probe = self.options[DropoutRobustness.name]
        assert isinstance(probe, DropoutRobustness)
        rates = torch.tensor(ROBUSTNESS_RATES, device=v.y.device)
        per_pass = rates.repeat_interleave(probe.passes)  # (10 · passes,)
        accs = self._accuracy(v, self._masked_predictions(v, self._masks(v, probe.name, per_pass)))
        out: list[dict[str, Value]] = []
        for acc in accs:  # DropoutRobustness.compute from here on
            curve = acc.reshape(len(ROBUSTNESS_RATES), probe.passes).mean(1).double()
            host = curve.cpu().numpy()
            out.append({
                "dropout_robustness_auc": float(host.mean()),
                "dropout_robustness_curve": host,
                "dropout_robustness_rates": np.asarray(ROBUSTNESS_RATES, dtype=np.float64),
            })  # fmt: skip
        return out

    def _circuit(self, v: _View) -> list[dict[str, Value]]:
        probe = self.options[CircuitComplexity.name]
        assert isinstance(probe, CircuitComplexity)
        name, weight = probe._target(self.template)
        stacked = v.params[name]  # (R, ...)
        count = math.floor(probe.fraction * weight.numel() + 0.5)
        keeps = []
        for seed in v.seeds:  # CircuitComplexity.compute's draw, from each run's generator
            gen = self._generator(seed, probe.name)
            dropped = torch.randperm(weight.numel(), generator=gen, device=weight.device)[:count]
            keep = torch.ones(weight.numel(), dtype=torch.bool, device=weight.device)
            keep[dropped] = False
            keeps.append(keep.reshape(weight.shape))
        perturbed = torch.where(torch.stack(keeps), stacked, torch.zeros_like(stacked))

        def both(p: dict[str, torch.Tensor], x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            base = functional_call(self.template, p, (x,))  # (N, C)
            knocked = functional_call(self.template, {**p, name: w}, (x,))  # (N, C)
            return torch.stack([base, knocked])  # (2, N, C)

        logits = self._eval(vmap(both), v.params, v.x, perturbed)  # (R, 2, N, C)
        out: list[dict[str, Value]] = []
        for pair, n in zip(logits, v.counts.tolist(), strict=True):
            kl = softmax_kl(pair[0, :n], pair[1, :n])  # (N,): CircuitComplexity.compute
            total, mean = torch.stack([kl.sum(), kl.mean()]).tolist()
            out.append({"circuit_complexity": total, "circuit_complexity_mean": mean})
        return out


@dataclasses.dataclass
class _View:
    """Some runs of the stack: their parameters, padded test sets and generator seeds."""

    params: dict[str, torch.Tensor]  # name → (R, ...)
    x: torch.Tensor  # (R, N, ...)
    y: torch.Tensor  # (R, N)
    valid: torch.Tensor  # (R, N): the run's own rows
    counts: torch.Tensor  # (R,): rows per run
    seeds: list[int]


def _feeds_output(
    model: nn.Module, x: torch.Tensor, hidden: str | None, output: str | None
) -> tuple[str, str | None] | None:
    """`(weight, bias)` parameter names of the output `nn.Linear` when the hidden activation's
    output is its input, unchanged (an MLP's last layer), seen in one forward of the input
    rows `x`; else None (a transformer's MLP feeds a residual stream)."""
    if hidden is None or output is None:
        return None
    out = model.get_submodule(output)
    if not isinstance(out, nn.Linear):
        return None
    seen: dict[str, Any] = {}
    act = model.get_submodule(hidden)
    handles = [
        act.register_forward_hook(lambda _m, _i, o: seen.__setitem__("hidden", o)),
        out.register_forward_pre_hook(lambda _m, a: seen.__setitem__("input", a[0])),
    ]
    was = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for module, mode in was:
            module.training = mode
        for handle in handles:
            handle.remove()
    if seen.get("hidden") is None or seen.get("hidden") is not seen.get("input"):
        return None
    return f"{output}.weight", (f"{output}.bias" if out.bias is not None else None)
