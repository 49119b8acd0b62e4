"""The in-process agent: two or three lines in a training loop.

.. code-block:: python

    agent = grokwatch.Agent(model, train=(x_train, y_train), test=(x_test, y_test))
    for step in range(steps):
        ...  # forward, backward, optimizer.step()
        if agent.step(step, loss=loss).should_stop:
            break
    agent.close()

At the evaluation steps (:mod:`grokwatch.schedule`: dense early, log-spaced later, within 1 % of
the loop's wall time by default) the agent runs its probes on the model (no_grad, eval mode
restored, private RNG), feeds the values to a :class:`~grokwatch.detector.RunDetector`, hands
the record to its transport (a background thread: the embedded SQLite store by default) and
returns a :class:`~grokwatch.decision.Decision`. Between evaluations ``step`` only records the
loss (its value on the CPU, a reference to the tensor on an accelerator). Nothing the agent
does raises into the training loop after construction: internal failures and probe errors are
counted in :attr:`Agent.errors`, and a probe that fails at consecutive evaluations is switched
off for the run.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from grokwatch.adapters import ModelCall, ModelIO
from grokwatch.decision import Decision, Phase, Reason
from grokwatch.destinations import Target, default_db_path, open_transport
from grokwatch.detector import DEFAULT, RunDetector
from grokwatch.events import EventRules
from grokwatch.exceptions import ConfigError
from grokwatch.losses import LossChoice, LossSource, candidate_means, match_means
from grokwatch.options import Layers, Limits, whole
from grokwatch.policy import RunPolicy
from grokwatch.probes import Layout, Probe, ProbeContext, ProbeResult, resolve, run_probe
from grokwatch.probes.base import ProbeSet, cross_entropy_per_sample
from grokwatch.probesets import Data, locate_layers, prepare_probe_set
from grokwatch.rundata import RunData
from grokwatch.schedule import (
    CALIBRATION_ROWS,
    CALL_SECONDS,
    DEFAULT_OVERHEAD,
    Plan,
    Schedule,
    check_overhead,
)
from grokwatch.transport import Record

__all__ = ["MAX_CONSECUTIVE_FAILURES", "Agent", "default_db_path"]

log = logging.getLogger("grokwatch")

#: A probe that fails at this many consecutive evaluations is switched off for the run.
MAX_CONSECUTIVE_FAILURES = 3
#: Seconds between two log lines about the same failing probe (the first has the traceback).
LOG_INTERVAL = 60.0

_AUTO: Any = object()
#: Below every step the agent accepts: the last step before the first call.
_NO_STEP = -(2**62) - 1


def _scalar(loss: torch.Tensor | float) -> float:
    """A reported loss as a float (NaN if it is not one number); a device sync, once a run."""
    try:
        return loss.detach().item() if isinstance(loss, torch.Tensor) else float(loss)
    except (TypeError, ValueError, RuntimeError):
        return float("nan")


class Agent:
    """Watches one training run and returns a typed decision at each evaluation.

    Args:
        model: the ``torch.nn.Module`` being trained. The agent never writes to it.
        train: ``(inputs, targets)`` to measure on; ``inputs`` a tensor (batch-first or
            sequence-first), a tuple of tensors (``model(a, b)``) or a dict (``model(**x)``),
            ``targets`` 1-D class indices. At most ``limits.max_samples`` rows are kept (a fixed
            subset drawn with the agent's own generator). May be omitted: probes that need it
            report ``not_applicable``, and accuracies may be passed to :meth:`step`.
        test: the same for held-out data.
        budget: the run's step budget (outcome labels, forecast horizon, and the horizon the
            overhead cap spreads the evaluations over).
        every: evaluate at the multiples of ``every`` steps. Default: the agent picks the steps
            (every 10 steps early, log-spaced later; :mod:`grokwatch.schedule`).
        overhead: cap on the agent's share of the loop's wall time, over the run's ``budget``
            when given (:mod:`grokwatch.schedule`). Default 0.01 when the agent picks the
            steps, no cap with a fixed ``every``; ``None``: no cap.
        probes: names or :class:`~grokwatch.probes.Probe` instances; default every built-in.
        transport: where records go (:func:`grokwatch.destinations.open_transport`): ``"auto"``
            (``$GROKWATCH_DETECTOR``, else the SQLite run table), a service URL, a database
            path, ``None`` (nothing kept) or a :class:`~grokwatch.transport.Transport`.
        run_id: the run's name (default a random hex id).
        config: the run's resolved configuration, saved with the run.
        labels: free-form string labels of the run (``experiment``, ``team``, ...): sent with
            its registration; the exporters show ``experiment`` and ``team`` on
            ``grokwatch_run_info`` so that alerts route by them.
        rules: :class:`~grokwatch.events.EventRules` thresholds.
        modulus: p for modular-arithmetic models (embedding rows are residues; Fourier probe).
        io: :class:`~grokwatch.adapters.ModelIO` adapters for models with unusual inputs or
            outputs, and the per-sample loss (not named: found at the first evaluation from the
            reported training loss, :mod:`grokwatch.losses`; see :attr:`loss`).
        layers: :class:`~grokwatch.options.Layers` naming the layers probes read.
        limits: :class:`~grokwatch.options.Limits` on what is kept and measured.
        seed: seed of the agent's private generators.
        policy: a :class:`~grokwatch.policy.RunPolicy` to get stop/extend advice (opt-in;
            without it every decision is ``CONTINUE``). It is saved in the run's meta, so a
            detector service applies the same policy, and the agent then follows the service's
            decision.
        forecaster: the in-process detector's forecaster (see
            :class:`~grokwatch.detector.RunDetector`): ``"default"`` (the shipped model),
            ``None`` (rule-based) or a forecaster object such as the
            :class:`~grokwatch.ConstantForecaster` test double.
        db: the older spelling of ``transport`` for a database path or ``None``.

    Numbers may be ints, numpy integers or whole floats (``budget=3e5``).

    Raises:
        ConfigError: (a ``ValueError``) at construction, naming the value: a cadence, budget or
            limit that is not a positive whole number, an unknown probe name, probe data of the
            wrong shape or with targets out of range, a model that cannot run on the data or
            returns logits in no known layout, a layer name that does not exist, a probe named
            explicitly whose layer or data is missing. Nothing raises after construction.

    Example:
        .. code-block:: python

            agent = grokwatch.Agent(model, train=(x_tr, y_tr), test=(x_te, y_te), budget=steps)
            for step in range(steps):
                loss = train_step()
                if agent.step(step, loss=loss).should_stop:
                    break
            agent.close()
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        train: Data | None = None,
        test: Data | None = None,
        budget: int | None = None,
        every: int | None = None,
        overhead: float | None = _AUTO,
        probes: Iterable[str | Probe] | None = None,
        transport: Target = "auto",
        run_id: str | None = None,
        config: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        rules: EventRules | None = None,
        modulus: int | None = None,
        io: ModelIO | None = None,
        layers: Layers | None = None,
        limits: Limits | None = None,
        seed: int = 0,
        policy: RunPolicy | None = None,
        forecaster: Any = DEFAULT,
        db: Any = _AUTO,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        every = None if every is None else whole("every", every, 1)
        budget = None if budget is None else whole("budget", budget, 1)
        modulus = None if modulus is None else whole("modulus", modulus, 2)
        seed = whole("seed", seed, 0)
        if labels is not None and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise ConfigError(f"labels must map str to str, got {labels=!r}")
        if db is not _AUTO:
            if not (isinstance(transport, str) and transport == "auto"):
                raise ConfigError("give transport= or db=, not both (db= is transport=PATH)")
            transport = db
        if overhead is _AUTO:
            overhead = DEFAULT_OVERHEAD if every is None else None
        io, layers, limits = io or ModelIO(), layers or Layers(), limits or Limits()
        for name, value, cls in (("io", io, ModelIO), ("layers", layers, Layers)):
            if not isinstance(value, cls):
                raise ConfigError(f"{name} must be a {cls.__name__}, got {value!r}")
        if not isinstance(limits, Limits):
            raise ConfigError(f"limits must be a Limits, got {limits!r}")
        self.model = model
        self.every = every
        self.snapshot_every = limits.snapshot_every or (10 * every if every else None)
        self._schedule = Schedule(
            every,
            check_overhead(overhead),
            self.snapshot_every,
            budget=budget,
            background=lambda: self.transport.stats.busy_seconds,
        )
        self._clock = self._schedule.clock
        self.probes: list[Probe] = resolve(probes)
        self.modulus = modulus
        self.loss_fn = io.loss_fn or cross_entropy_per_sample
        self.loss = (
            LossChoice("named", LossSource.NAMED, "measuring the loss named in ModelIO")
            if io.loss_fn is not None
            else LossChoice.fallback(LossSource.PENDING, "cross-entropy until the first evaluation")
        )
        """The loss the probes measure and why (:mod:`grokwatch.losses`): unless
        ``io.loss_fn`` names it, chosen at the first evaluation from the reported loss."""
        self._loss_check: dict[str, dict[str, float]] | None = None
        """Each candidate loss's mean on each probe set at the first evaluation, while the
        loss reported at the next step (on the same weights) may still settle the choice."""
        self._checked: tuple[int, dict[str, float], frozenset[str]] | None = None
        """That evaluation (step, its values as kept in the history, keys the loop gave)."""
        self.budget = budget
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self._seed = seed
        self._gen = torch.Generator().manual_seed(seed)
        self._call = ModelCall(io)
        layout = Layout.discover(
            model,
            embedding=layers.embedding,
            hidden=layers.hidden,
            output=layers.output,
            hidden_from=layers.hidden_from,
        )
        self._train = prepare_probe_set("train", train, model, limits.max_samples, self._gen)
        self._test = prepare_probe_set("test", test, model, limits.max_samples, self._gen)
        for split, data in (("test", self._test), ("train", self._train)):
            if data is not None:
                try:
                    self.layout, self._call = locate_layers(
                        model, layout, ModelCall(io), data, hidden_named=layers.hidden is not None
                    )
                except ConfigError as exc:
                    raise ConfigError(f"{split}: {exc}") from exc
        if self._train is None and self._test is None:
            self.layout = layout
        self._check_layers_used(insisted=probes is not None)
        if policy is not None and not isinstance(policy, RunPolicy):
            raise ConfigError(f"policy must be a grokwatch.RunPolicy, got {policy!r}")
        self.detector = RunDetector(rules, budget=budget, forecaster=forecaster, policy=policy)
        self.history: collections.deque[tuple[int, dict[str, float]]] = collections.deque(
            maxlen=limits.max_history
        )
        self.snapshots: dict[int, dict[str, np.ndarray]] = {}
        self._max_snapshots = limits.max_snapshots
        self.statuses: dict[str, ProbeResult] = {}
        self.probe_seconds: dict[str, float] = collections.defaultdict(float)
        self.probe_errors: dict[str, int] = collections.defaultdict(int)
        self.probe_runs: dict[str, int] = collections.defaultdict(int)
        """Runs of each probe on all rows (calibration runs on a few rows not counted)."""
        self.disabled: dict[str, str] = {}
        self._consecutive: dict[str, int] = collections.defaultdict(int)
        self._logged_at: dict[str, float] = {}
        self.measure_seconds = 0.0
        self.errors = 0
        self.last_error = ""
        self.ignored_steps = 0
        self._loss_window = limits.loss_window
        self._pending_losses: collections.deque[tuple[int, torch.Tensor | float]] = (
            collections.deque(maxlen=limits.loss_window)
        )
        self._loss_steps: collections.deque[int] = collections.deque(maxlen=limits.loss_window)
        self._loss_values: collections.deque[float] = collections.deque(maxlen=limits.loss_window)
        self._calibration: list[ProbeContext] | None = None
        self._last_step = _NO_STEP
        self._due = _NO_STEP
        """The fast path of :meth:`step` covers the steps before this one (none while off)."""
        self._left = 0.0
        self._evaluated_at: int | None = None
        self._interval_before: float | None = None
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
            "overhead": self._schedule.overhead,
            "snapshot_every": self.snapshot_every,
            "probes": [p.name for p in self.probes],
            "layout": dataclasses.asdict(self.layout),
            "modulus": modulus,
            "max_samples": limits.max_samples,
            "rules": dataclasses.asdict(self.detector.rules),
            "model": type(model).__name__,
            **({} if policy is None else {"policy": policy.to_json()}),
        }
        if labels:
            self.meta["labels"] = dict(labels)
        self.transport = open_transport(transport)
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
            missing = [need for need in probe.requires if have.get(need) is None]
            if missing:
                raise ConfigError(
                    f"probe {probe.name!r} needs {', '.join(missing)} but the model/agent has "
                    f"none; name the layer (layers=Layers(...)) or pass the data"
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

        ``loss`` is this step's training loss (a tensor on an accelerator is kept without a
        device sync until the next evaluation; a CPU tensor is read at once). The other
        values, when given at an evaluation step, replace the agent's own measurement of them.
        Steps may be skipped (a loop may call every 100 steps): evaluations fall on the same
        grid steps, and windows are in steps.
        """
        # the path of a call that only records the loss: it runs at every step, right after a
        # training step has pushed the interpreter out of the caches, so it touches few objects
        entered = self._clock()
        try:
            if type(step) is int and self._last_step < step < self._due:
                self._last_step = step
                if type(loss) is torch.Tensor and loss.is_cpu:
                    self._pending_losses.append((step, loss.item()))
                elif loss is not None:
                    self._keep_loss(step, loss)
                return self.decision
            given = {
                "train_loss": train_loss,
                "train_accuracy": train_acc,
                "test_loss": test_loss,
                "test_accuracy": test_acc,
            }
            self._full_step(step, loss, given, entered)
        except Exception as exc:  # the agent must never break the run it watches
            self._failed(step, exc)
        finally:
            left = self._clock()
            self._schedule.spent += left - entered + CALL_SECONDS
            self._left = left
        return self.decision

    def _keep_loss(self, step: int, loss: torch.Tensor | float) -> None:
        # on the CPU there is no sync to defer, and a kept tensor would pin a small block
        # inside the heap the training step allocates from (the heap then grows and the step's
        # tensors land on fresh pages: measured +210 KB a step)
        if not isinstance(loss, torch.Tensor):
            self._pending_losses.append((step, float(loss)))
        elif loss.is_cpu:
            self._pending_losses.append((step, loss.item()))
        else:  # kept without a sync until the next evaluation, and without its graph
            self._pending_losses.append((step, loss.detach()))

    def _full_step(
        self,
        step: int,
        loss: torch.Tensor | float | None,
        given: Mapping[str, float | None],
        entered: float,
    ) -> None:
        """:meth:`step` beyond the fast path: the first call, odd steps, evaluations, and the
        call after an evaluation (which charges its spill-over)."""
        schedule = self._schedule
        if schedule.started is None:
            schedule.started = entered
        self._due = _NO_STEP  # the fast path is off until this call is done
        if self._closed:
            return
        if type(step) is not int:
            step = whole("step", step, -(2**62))
        last = self._last_step
        if step <= last:
            self.ignored_steps += 1
            self._due = schedule.next_due
            return
        self._last_step = step
        if self._evaluated_at is not None:
            self._charge_spill_over(step, entered)
        if loss is not None:
            self._keep_loss(step, loss)
        if self._checked is not None:
            self._settle_loss(step, loss)
        if step >= schedule.next_due:
            before = entered - self._left if last == step - 1 else None
            values = {k: float(v) for k, v in given.items() if v is not None}
            if self._measure(step, values, entered):
                self._evaluated_at, self._interval_before = step, before
        if self._evaluated_at is None:
            self._due = schedule.next_due

    def _charge_spill_over(self, step: int, entered: float) -> None:
        """Charge the loop's first step after an evaluation with what it took beyond the step
        before the evaluation (caches the evaluation left cold): a cost outside the agent's
        calls. Measured only when the loop calls at consecutive steps."""
        at, before = self._evaluated_at, self._interval_before
        self._evaluated_at = self._interval_before = None
        if at is not None and before is not None and step == at + 1:
            self._schedule.spilled(max(entered - self._left - before, 0.0))

    def _failed(self, step: object, exc: Exception) -> None:
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.errors <= 3:
            log.warning("grokwatch agent error at step %r: %s", step, self.last_error)
        self.decision = Decision.keep_going(
            self.decision.step, Reason.AGENT_ERROR, self.last_error, self.decision.phase
        )
        if not self._closed and self._evaluated_at is None:
            self._due = self._schedule.next_due

    def _drain_losses(self, step: int) -> None:
        pending = self._pending_losses
        if pending:
            steps = [s for s, _ in pending]
            raw = [v for _, v in pending]
            values: list[float]
            if all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in raw):
                try:
                    values = torch.stack(raw).float().tolist()  # type: ignore[arg-type]  # sync
                except RuntimeError:  # mixed devices or dtypes
                    values = [float(v) for v in raw]
            else:
                values = [float(v) for v in raw]  # sync per tensor (mixed input)
            self._loss_steps.extend(steps)
            self._loss_values.extend(values)
            pending.clear()
        while self._loss_steps and self._loss_steps[0] <= step - self._loss_window:
            self._loss_steps.popleft()
            self._loss_values.popleft()

    def _measure(self, step: int, given: Mapping[str, float], entered: float) -> bool:
        """Evaluate at grid step ``step`` if the schedule allows; whether it did."""
        started = self._clock()
        schedule = self._schedule
        schedule.next_due = schedule.after(step)
        if not schedule.ready(step, entered):
            schedule.skipped += 1
            return False
        active = [p for p in self.probes if p.name not in self.disabled]
        snapshot = step >= schedule.next_snapshot
        plan = schedule.plan(active, step, snapshot, entered)
        if plan is None:
            schedule.skipped += 1
            return False
        self._drain_losses(step)
        probe_seconds = 0.0
        if plan.calibrate is not None:
            probe_seconds += self._calibrate(step, plan.calibrate, one_off=plan.first)
        reported = given.get("train_loss", self._loss_values[-1] if self._loss_values else None)
        values, seconds = self._run_probes(
            step, plan.probes, snapshot, plan=plan, reported=reported
        )
        probe_seconds += seconds
        if self._loss_values:
            values["train_loss_step"] = self._loss_values[-1]
        values.update(given)
        values["agent_probe_errors"] = float(sum(self.probe_errors.values()))
        values["agent_overhead_ratio"] = schedule.ratio()
        self._observe(step, values)
        if self._loss_check is not None and self._checked is None:
            self._checked = (step, values, frozenset(given))  # settled at the next call
        new_event = self._new_event()
        if snapshot or new_event:
            if not snapshot:
                probe_seconds += self._run_probes(step, self._snapshot_probes(), True)[1]
            schedule.next_snapshot = schedule.snapshot_after(step)
        self.last_report_time = time.time()
        elapsed = self._clock() - started
        self.measure_seconds += elapsed
        schedule.evaluated(elapsed - probe_seconds, first=plan.first)
        return True

    def _observe(self, step: int, values: dict[str, float]) -> None:
        """Hand an evaluation to the detector, the history and the transport."""
        self.decision = self.detector.observe(step, values)
        remote = self.transport.remote_decision()
        if remote is not None:
            self.decision = remote
        self.history.append((step, values))
        self.transport.submit(Record("points", self.run_id, points=[(step, values)]))

    def _snapshot_probes(self) -> list[Probe]:
        """Extra snapshots (events, close) rerun only the probes that produce arrays (and,
        under a cap, only the core ones)."""
        schedule = self._schedule
        active = [
            p
            for p in self.probes
            if p.name not in self.disabled and (schedule.overhead is None or schedule.core(p))
        ]
        if not self._array_probes and schedule.overhead is None:
            return active
        return [p for p in active if p.name in self._array_probes]

    def _context(self, step: int, snapshot: bool, rows: int | None = None) -> ProbeContext:
        """The probes' view of the model at ``step`` (on the first ``rows`` rows of each set)."""

        def head(data: ProbeSet | None) -> ProbeSet | None:
            if data is None or rows is None:
                return data
            return ProbeSet(data.inputs.head(min(rows, data.inputs.rows)), data.targets[:rows])

        return ProbeContext(
            self.model,
            step=step,
            layout=self.layout,
            train=head(self._train),
            test=head(self._test),
            train_losses=self._loss_values,
            train_loss_steps=self._loss_steps,
            generator_seed=self._seed,
            loss_fn=self.loss_fn,
            modulus=self.modulus,
            snapshot=snapshot,
            call=self._call,
        )

    def _calibrate(self, step: int, probe: Probe, *, one_off: bool = False) -> float:
        """Time ``probe`` on a few rows of each probe set (values discarded): its cost on all
        rows is extrapolated by the schedule. Returns the seconds spent."""
        started = self._clock()
        rows = max((d.inputs.rows for d in (self._train, self._test) if d is not None), default=0)
        small, large = CALIBRATION_ROWS
        sizes = (min(small, rows), min(large, max(small, rows // 2)))  # fewer rows than all
        if self._calibration is None:
            self._calibration = [self._context(step, False, n) for n in sizes]
            for ctx in self._calibration:  # the shared captures, computed once as in evaluations
                for split in ("train", "test"):
                    if getattr(ctx, split) is not None:
                        ctx.capture(split)
        timings = []
        for n, ctx in zip(sizes, self._calibration, strict=True):
            t0 = self._clock()
            run_probe(probe, ctx)
            timings.append((n, self._clock() - t0))
        seconds = self._clock() - started
        self._schedule.calibrated(probe, timings, rows, seconds, one_off=one_off)
        return seconds

    def _run_probes(
        self,
        step: int,
        probes: list[Probe],
        snapshot: bool,
        *,
        plan: Plan | None = None,
        reported: float | None = None,
    ) -> tuple[dict[str, float], float]:
        """Run ``probes``; only a scheduled run (with its ``plan``) moves their next due steps.
        At the first scheduled run, the loss is chosen from the ``reported`` training loss.

        Returns the values and the seconds spent in the probes."""
        ctx = self._context(step, snapshot)
        if plan is not None and self.loss.source is LossSource.PENDING:
            self._choose_loss(ctx, reported)
        values: dict[str, float] = {}
        arrays: dict[str, np.ndarray] = {}
        total = 0.0
        for probe in probes:
            t0 = self._clock()
            result = run_probe(probe, ctx)
            seconds = self._clock() - t0
            total += seconds
            self.probe_seconds[probe.name] += seconds
            self.probe_runs[probe.name] += 1
            account = "extra" if plan is None else plan.account(probe)
            self._schedule.ran(probe, seconds, None if plan is None else step, account=account)
            self.statuses[probe.name] = result
            self._account(step, result)
            values.update(result.values)
            arrays.update(result.arrays)
            if result.arrays:
                self._array_probes.add(probe.name)
        if snapshot and arrays:
            self._keep_snapshot(step, arrays)
        return values, total

    def _choose_loss(self, ctx: ProbeContext, reported: float | None) -> None:
        """Measure the loss the reported one matches (:mod:`grokwatch.losses`). Unless it
        matched closely, the loss reported at the next step, on these weights, settles the
        choice (:meth:`_settle_loss`)."""
        step = ctx.step
        try:
            if ctx.train is None:
                choice = LossChoice.fallback(
                    LossSource.NO_TRAIN_DATA,
                    "no train data to compare the reported loss with: measuring cross-entropy",
                    step,
                )
            elif reported is None:
                choice = LossChoice.fallback(
                    LossSource.NOT_REPORTED,
                    "the loop reported no training loss by the first evaluation: measuring "
                    "cross-entropy (pass loss= to step, or name the loss: ModelIO(loss_fn=...))",
                    step,
                )
            else:
                check = {"train": candidate_means(ctx.capture("train").logits, ctx.train.targets)}
                choice = match_means(float(reported), check["train"], step=step)
                if not choice.settled:  # the loss reported next, on these weights, decides
                    if ctx.test is not None:
                        check["test"] = candidate_means(
                            ctx.capture("test").logits, ctx.test.targets
                        )
                    self._loss_check = check
        except Exception as exc:  # e.g. the forward pass failed: the loss probe reports it
            self._loss_check = None
            choice = LossChoice.fallback(
                LossSource.NO_MATCH,
                f"could not compare the reported loss ({type(exc).__name__}: {exc}): "
                "measuring cross-entropy",
                step,
            )
        self.loss = choice
        self.loss_fn = ctx.loss_fn = choice.loss_fn
        if self._loss_check is None:
            log.info("grokwatch: %s", choice.message)

    def _settle_loss(self, step: int, loss: torch.Tensor | float | None) -> None:
        """Settle the loss with the loss reported at the step after the first evaluation (the
        loss of the weights it measured). If the choice changes, that evaluation's losses are
        corrected in the history and the detector is rebuilt on it (what was already sent to
        the transport keeps the first guess)."""
        started = self._clock()
        checked_step, values, given = self._checked  # type: ignore[misc]
        check = self._loss_check or {}
        self._checked = self._loss_check = None
        guess = self.loss
        if loss is not None and step == checked_step + 1 and check.get("train"):
            exact = match_means(_scalar(loss), check["train"], step=checked_step)
            if exact.source is LossSource.MATCHED or exact.nearest != guess.name:
                self.loss = exact
        self.loss_fn = self.loss.loss_fn
        log.info("grokwatch: %s", self.loss.message)
        if self.loss.name != guess.name:
            for split, means in check.items():
                key = f"{split}_loss"
                if key in values and key not in given and self.loss.name in means:
                    values[key] = means[self.loss.name]
            old = self.detector
            self.detector = RunDetector(
                old.rules,
                budget=old.budget,
                forecaster=old.forecaster,
                min_confidence=old.min_confidence,
                policy=old.policy,
            )
            self.decision = self.detector.update_many(list(self.history))
        # the first evaluation's own work, finished one call late: a one-off cost
        seconds = self._clock() - started
        self._schedule.one_off += seconds
        self.measure_seconds += seconds

    def _account(self, step: int, result: ProbeResult) -> None:
        """Count a probe failure, log it (rate-limited), switch the probe off if it persists."""
        name = result.probe
        if result.status != "error":
            self._consecutive[name] = 0
            return
        self.errors += 1
        self.probe_errors[name] += 1
        self._consecutive[name] += 1
        self.last_error = f"probe {name}: {result.reason}"
        now = time.monotonic()
        if self.probe_errors[name] == 1:
            self._logged_at[name] = now
            log.warning("grokwatch probe %r failed at step %d:\n%s", name, step, result.trace)
        elif now - self._logged_at.get(name, 0.0) >= LOG_INTERVAL:
            self._logged_at[name] = now
            log.warning(
                "grokwatch probe %r failed again at step %d (%d failures): %s",
                name,
                step,
                self.probe_errors[name],
                result.reason,
            )
        if self._consecutive[name] >= MAX_CONSECUTIVE_FAILURES:
            self.disabled[name] = (
                f"failed at {self._consecutive[name]} consecutive evaluations: {result.reason}"
            )
            log.warning("grokwatch probe %r switched off for this run: %s", name, result.reason)

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

    @property
    def evaluations(self) -> int:
        """Evaluations run so far."""
        return self._schedule.evaluations

    @property
    def overhead_ratio(self) -> float:
        """The agent's share of the training loop's wall time so far (0 before the loop)."""
        return self._schedule.ratio()

    def summary(self) -> dict[str, Any]:
        """Events, phase, outcome and the agent's own health counters."""
        out = self.detector.summary()
        out.update(
            {
                "evaluations": self.evaluations,
                "skipped_evaluations": self._schedule.skipped,
                "agent_errors": self.errors,
                "agent_last_error": self.last_error,
                "agent_overhead_ratio": self.overhead_ratio,
                "agent_one_off_seconds": self._schedule.one_off,
                "agent_background_seconds": self.transport.stats.busy_seconds,
                "ignored_steps": self.ignored_steps,
                "transport_dropped": self.transport.stats.dropped,
                "measure_seconds": self.measure_seconds,
                "probe_status": {k: r.status for k, r in self.statuses.items()},
                "probe_reasons": {k: r.reason for k, r in self.statuses.items() if r.reason},
                "probe_errors": dict(self.probe_errors),
                "probe_runs": dict(self.probe_runs),
                "probes_disabled": dict(self.disabled),
                "loss": self.loss.name,
                "loss_source": self.loss.source.value,
                "loss_message": self.loss.message,
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
        """Take a final snapshot, send the summary and stop the transport. Idempotent.

        Under an overhead cap the final snapshot is taken only if the cap allows it.
        """
        if self._closed:
            return
        entered = self._schedule.enter()
        try:
            if self._checked is not None:
                self._settle_loss(self._last_step, None)
            last = self._last_step
            probes = self._snapshot_probes()
            if (
                last != _NO_STEP
                and last not in self.snapshots
                and self._schedule.credit(entered) >= self._schedule.predicted(probes)
            ):
                self._run_probes(last, probes, True)
        except Exception as exc:
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
        finally:
            self._schedule.leave(entered)
        self._closed = True
        self._due = _NO_STEP
        self.finished_at = time.time()
        self.transport.submit(Record("finish", self.run_id, meta=self.summary()))
        self.transport.close(timeout)

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
