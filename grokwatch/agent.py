"""The in-process agent: two or three lines in a training loop.

.. code-block:: python

    agent = grokwatch.Agent(model, train=(x_train, y_train), test=(x_test, y_test))
    for step in range(steps):
        ...  # forward, backward, optimizer.step()
        if agent.step(step, loss=loss).should_stop:
            break
    agent.close()

Every ``every`` steps the agent runs its probes on the model (no_grad, eval mode restored,
private RNG), feeds the values to a :class:`~grokwatch.detector.RunDetector`, hands the record
to its transport (a background thread: the embedded SQLite store by default) and returns a
:class:`~grokwatch.decision.Decision`. Between evaluations ``step`` only keeps a reference to
the loss tensor. Nothing the agent does raises into the training loop after construction:
internal failures are counted in :attr:`Agent.errors` and answered with an ``agent_error``
decision.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from grokwatch.decision import Decision, Phase, Reason
from grokwatch.detector import DEFAULT, RunDetector
from grokwatch.events import EventRules
from grokwatch.exceptions import ConfigError
from grokwatch.policy import RunPolicy
from grokwatch.probes import Layout, Probe, ProbeContext, ProbeResult, resolve, run_probe
from grokwatch.probes.base import cross_entropy_per_sample
from grokwatch.probesets import Data, prepare_probe_set
from grokwatch.rundata import RunData
from grokwatch.store import SQLiteStore
from grokwatch.transport import NullTransport, Record, StoreTransport, Transport

log = logging.getLogger("grokwatch")

DEFAULT_EVERY = 500
"""Default cadence, chosen with ``benchmarks/overhead.py`` so that the full probe set stays within
~2 % of training time on the reference run (results in docs/agent.md, *Overhead*)."""

_DEFAULT = object()


def default_db_path() -> Path:
    """``$GROKWATCH_DB``, else ``$GROKWATCH_HOME/runs.db``, else ``~/.grokwatch/runs.db``."""
    if "GROKWATCH_DB" in os.environ:
        return Path(os.environ["GROKWATCH_DB"])
    home = Path(os.environ.get("GROKWATCH_HOME", Path.home() / ".grokwatch"))
    return home / "runs.db"


class Agent:
    """Watches one training run. See the module docstring for the loop snippet.

    Parameters (all keyword-only but ``model``)
    ----------
    train, test:
        ``(inputs, targets)`` probe sets; at most ``max_samples`` rows of each are kept (a fixed
        subset drawn with the agent's own generator). Either may be omitted: probes that need
        it report "not applicable", and accuracies may be passed to :meth:`step` instead.
    every:
        Evaluate when the step reaches the next multiple of ``every``.
    probes:
        Names or :class:`~grokwatch.probes.Probe` instances; default every built-in probe.
    snapshot_every:
        Steps between snapshots (cosine matrices, robustness curves, embedding values);
        default ``10 * every``. Snapshots are also taken when ``t_mem`` or ``t_grok`` is first
        seen, and at :meth:`close`.
    run_id, config, budget:
        Identity, the run's resolved configuration (saved with the run) and its step budget.
    labels:
        Free-form string labels of the run (``experiment``, ``team``, ...): sent with its
        registration; the exporters show ``experiment`` and ``team`` on ``grokwatch_run_info``
        so that alerts route by them.
    db:
        SQLite path for the run table (default :func:`default_db_path`); ``None`` keeps
        nothing on disk. Ignored when ``transport`` is given.
    transport:
        Where records go (see :mod:`grokwatch.transport`).
    detector:
        URL of a detector service (``grokwatch serve``), several comma-separated replicas, or
        a list of them; default ``$GROKWATCH_DETECTOR``. When set and no ``transport`` is
        given, records go to an :class:`~grokwatch.http_transport.HTTPTransport` (and ``db``
        is ignored).
    modulus:
        p for modular-arithmetic models (embedding rows are residues), for the Fourier probe.
    embedding, hidden, output:
        Module names that override layer discovery.
    policy:
        A :class:`~grokwatch.policy.RunPolicy` to get stop/extend advice (opt-in; without it
        every decision is ``CONTINUE``). It is saved in the run's meta, so a detector service
        applies the same policy, and the agent then follows the service's decision.
    forecaster:
        The in-process detector's forecaster (see :class:`~grokwatch.detector.RunDetector`):
        ``"default"`` (the shipped model), ``None`` (rule-based) or a forecaster object such as
        the :class:`~grokwatch.ConstantForecaster` test double.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        train: Data | None = None,
        test: Data | None = None,
        every: int = DEFAULT_EVERY,
        probes: Iterable[str | Probe] | None = None,
        snapshot_every: int | None = None,
        run_id: str | None = None,
        config: Mapping[str, Any] | None = None,
        budget: int | None = None,
        labels: Mapping[str, str] | None = None,
        db: Any = _DEFAULT,
        transport: Transport | None = None,
        detector: str | Sequence[str] | None = None,
        rules: EventRules | None = None,
        modulus: int | None = None,
        embedding: str | None = None,
        hidden: str | None = None,
        output: str | None = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        max_samples: int = 2048,
        loss_window: int = 1000,
        max_history: int = 100_000,
        max_snapshots: int = 64,
        seed: int = 0,
        policy: RunPolicy | None = None,
        forecaster: Any = DEFAULT,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        for name, value, low in (
            ("every", every, 1),
            ("max_samples", max_samples, 1),
            ("loss_window", loss_window, 8),
            ("max_history", max_history, 1),
            ("max_snapshots", max_snapshots, 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{name} must be an int >= {low}, got {name}={value!r}")
        if snapshot_every is not None and (
            not isinstance(snapshot_every, int) or snapshot_every < 1
        ):
            raise ConfigError(f"snapshot_every must be an int >= 1, got {snapshot_every=!r}")
        if budget is not None and (not isinstance(budget, int) or budget < 1):
            raise ConfigError(f"budget must be a positive int, got {budget=!r}")
        if labels is not None and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise ConfigError(f"labels must map str to str, got {labels=!r}")
        if modulus is not None and (not isinstance(modulus, int) or modulus < 2):
            raise ConfigError(f"modulus must be an int >= 2, got {modulus=!r}")
        self.model = model
        self.every = every
        self.snapshot_every = snapshot_every or 10 * every
        self.probes: list[Probe] = resolve(probes)
        self.layout = Layout.discover(model, embedding=embedding, hidden=hidden, output=output)
        self.modulus = modulus
        self.loss_fn = loss_fn or cross_entropy_per_sample
        self.budget = budget
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self._seed = seed
        self._gen = torch.Generator().manual_seed(seed)
        self._train = prepare_probe_set("train", train, model, max_samples, self._gen)
        self._test = prepare_probe_set("test", test, model, max_samples, self._gen)
        self._check_layers_used(insisted=probes is not None)
        if policy is not None and not isinstance(policy, RunPolicy):
            raise ConfigError(f"policy must be a grokwatch.RunPolicy, got {policy!r}")
        self.detector = RunDetector(rules, budget=budget, forecaster=forecaster, policy=policy)
        self.history: collections.deque[tuple[int, dict[str, float]]] = collections.deque(
            maxlen=max_history
        )
        self.snapshots: dict[int, dict[str, np.ndarray]] = {}
        self._max_snapshots = max_snapshots
        self.statuses: dict[str, ProbeResult] = {}
        self.probe_seconds: dict[str, float] = collections.defaultdict(float)
        self.measure_seconds = 0.0
        self.errors = 0
        self.last_error = ""
        self.ignored_steps = 0
        self._pending_losses: collections.deque[torch.Tensor | float] = collections.deque(
            maxlen=loss_window
        )
        self._loss_window: collections.deque[float] = collections.deque(maxlen=loss_window)
        self._next_due = 0
        self._last_step: int | None = None
        self._evaluations = 0
        self._next_snapshot = 0
        self._seen_events: set[str] = set()
        self._array_probes: set[str] = set()
        self._closed = False
        self.finished_at: float | None = None
        """Wall time :meth:`close` was called (``None`` while the run is watched)."""
        self.last_report_time: float | None = None
        self.decision = Decision.keep_going(
            0, Reason.NOT_MEASURED, "no evaluation yet", Phase.MEMORIZING
        )
        self.meta: dict[str, Any] = {
            "config": dict(config or {}),
            "budget": budget,
            "every": every,
            "snapshot_every": self.snapshot_every,
            "probes": [p.name for p in self.probes],
            "layout": dataclasses.asdict(self.layout),
            "modulus": modulus,
            "rules": dataclasses.asdict(self.detector.rules),
            "model": type(model).__name__,
            **({} if policy is None else {"policy": policy.to_json()}),
        }
        if labels:
            self.meta["labels"] = dict(labels)
        detector = detector or os.environ.get("GROKWATCH_DETECTOR") or None
        if transport is not None:
            self.transport = transport
        elif detector:
            from grokwatch.http_transport import HTTPTransport

            self.transport = HTTPTransport(detector)
        elif db is None:
            self.transport = NullTransport()
        else:
            self.transport = StoreTransport(
                SQLiteStore(default_db_path() if db is _DEFAULT else Path(db))
            )
        self.transport.submit(Record("start", self.run_id, meta=self.meta))

    # -- set-up -----------------------------------------------------------------------------

    def _check_layers_used(self, *, insisted: bool) -> None:
        """Probes the user named must find the layers they need (checked by name only)."""
        name = self.layout.embedding
        if name is not None and not isinstance(self.model.get_submodule(name), nn.Embedding):
            raise ConfigError(f"embedding layer {name!r} is not an nn.Embedding")
        if not insisted:
            return
        have = {
            "embedding": self.layout.embedding,
            "hidden": self.layout.hidden,
            "output": self.layout.output,
            "train": self._train,
            "test": self._test,
        }
        for probe in self.probes:
            missing = [need for need in getattr(probe, "requires", ()) if have.get(need) is None]
            if missing:
                raise ConfigError(
                    f"probe {probe.name!r} needs {', '.join(missing)} but the model/agent has "
                    f"none; name the layer (embedding=/hidden=/output=) or pass the data"
                )

    # -- the training-loop API --------------------------------------------------------------

    def step(
        self,
        step: int,
        *,
        loss: torch.Tensor | float | None = None,
        train_loss: float | None = None,
        train_acc: float | None = None,
        test_loss: float | None = None,
        test_acc: float | None = None,
    ) -> Decision:
        """Record one training step; evaluate when due. Never raises.

        ``loss`` is this step's training loss (a tensor is kept without a device sync until
        the next evaluation). The other values, when given at an evaluation step, replace the
        agent's own measurement of them.
        """
        try:
            if self._closed:
                return self.decision
            if loss is not None:
                self._pending_losses.append(
                    loss.detach() if isinstance(loss, torch.Tensor) else float(loss)
                )
            if not isinstance(step, int) or isinstance(step, bool):
                raise TypeError(f"step must be an int, got {step!r}")
            if self._last_step is not None and step <= self._last_step:
                self.ignored_steps += 1
                return self.decision
            self._last_step = step
            if step < self._next_due:
                return self.decision
            given = {
                "train_loss": train_loss,
                "train_accuracy": train_acc,
                "test_loss": test_loss,
                "test_accuracy": test_acc,
            }
            self._measure(step, {k: float(v) for k, v in given.items() if v is not None})
        except Exception as exc:  # the agent must never break the run it watches
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            if self.errors <= 3:
                log.warning("grokwatch agent error at step %r: %s", step, self.last_error)
            self.decision = Decision.keep_going(
                self.decision.step, Reason.AGENT_ERROR, self.last_error, self.decision.phase
            )
        return self.decision

    def _drain_losses(self) -> None:
        if not self._pending_losses:
            return
        tensors = [t for t in self._pending_losses if isinstance(t, torch.Tensor)]
        if len(tensors) == len(self._pending_losses):
            values = torch.stack([t.float().reshape(()) for t in tensors]).tolist()  # sync
        else:
            values = [float(t) for t in self._pending_losses]  # sync per tensor (mixed input)
        self._loss_window.extend(values)
        self._pending_losses.clear()

    def _measure(self, step: int, given: Mapping[str, float]) -> None:
        started = time.perf_counter()
        self._drain_losses()
        self._next_due = (step // self.every + 1) * self.every
        snapshot = step >= self._next_snapshot
        values = self._run_probes(step, snapshot)
        if self._loss_window:
            values["train_loss_step"] = self._loss_window[-1]
        values.update(given)
        self._evaluations += 1
        self.decision = self.detector.observe(step, values)
        remote = self.transport.remote_decision()
        if remote is not None:
            self.decision = remote
        self.history.append((step, values))
        self.transport.submit(Record("points", self.run_id, points=[(step, values)]))
        new_event = self._new_event()
        if snapshot or new_event:
            if not snapshot:
                self._run_probes(step, True, extra=True)
            self._next_snapshot = step + self.snapshot_every
        self.last_report_time = time.time()
        self.measure_seconds += time.perf_counter() - started

    def _run_probes(self, step: int, snapshot: bool, *, extra: bool = False) -> dict[str, float]:
        """Run the due probes; ``extra`` snapshots (events, close) rerun only array probes."""
        ctx = ProbeContext(
            self.model,
            step=step,
            layout=self.layout,
            train=self._train,
            test=self._test,
            train_losses=tuple(self._loss_window),
            generator_seed=self._seed,
            loss_fn=self.loss_fn,
            modulus=self.modulus,
            snapshot=snapshot,
        )
        values: dict[str, float] = {}
        arrays: dict[str, np.ndarray] = {}
        for probe in self.probes:
            if not snapshot and self._evaluations % probe.period:
                continue
            if extra and self._array_probes and probe.name not in self._array_probes:
                continue
            t0 = time.perf_counter()
            result = run_probe(probe, ctx)
            self.probe_seconds[probe.name] += time.perf_counter() - t0
            self.statuses[probe.name] = result
            values.update(result.values)
            arrays.update(result.arrays)
            if result.arrays:
                self._array_probes.add(probe.name)
        if snapshot and arrays:
            self._keep_snapshot(step, arrays)
        return values

    def _keep_snapshot(self, step: int, arrays: dict[str, np.ndarray]) -> None:
        self.snapshots[step] = arrays
        while len(self.snapshots) > self._max_snapshots:
            # drop the second-oldest: the initial snapshot stays for "before" pictures
            del self.snapshots[sorted(self.snapshots)[1]]
        self.transport.submit(Record("snapshot", self.run_id, step=step, arrays=arrays))

    def _new_event(self) -> bool:
        ev = self.detector.events
        fresh = False
        for name, value in (("t_mem", ev.t_mem), ("t_grok", ev.t_grok)):
            if value is not None and name not in self._seen_events:
                self._seen_events.add(name)
                fresh = True
        return fresh

    # -- results ----------------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self.detector.phase

    @property
    def events(self) -> Any:
        return self.detector.events

    def summary(self) -> dict[str, Any]:
        """Events, phase, outcome and the agent's own health counters."""
        out = self.detector.summary()
        out.update(
            {
                "evaluations": self._evaluations,
                "agent_errors": self.errors,
                "agent_last_error": self.last_error,
                "ignored_steps": self.ignored_steps,
                "transport_dropped": self.transport.stats.dropped,
                "measure_seconds": self.measure_seconds,
                "probe_status": {k: r.status for k, r in self.statuses.items()},
                "probe_reasons": {k: r.reason for k, r in self.statuses.items() if r.reason},
            }
        )
        return out

    def run_data(self) -> RunData:
        return RunData(
            run_id=self.run_id,
            meta=self.meta,
            summary=self.summary(),
            points=list(self.history),
            snapshots=dict(self.snapshots),
        )

    def close(self, timeout: float = 10.0) -> None:
        """Take a final snapshot, send the summary and stop the transport. Idempotent."""
        if self._closed:
            return
        try:
            if self._last_step is not None and self._last_step not in self.snapshots:
                self._run_probes(self._last_step, True, extra=True)
        except Exception as exc:
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
        self._closed = True
        self.finished_at = time.time()
        self.transport.submit(Record("finish", self.run_id, meta=self.summary()))
        self.transport.close(timeout)

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
