"""When the agent evaluates and which probes run: a cadence under a cap on the agent's cost.

Evaluations fall on a grid of steps, so two loops that call :meth:`Agent.step` at different
rates evaluate at the same steps (a loop calling every 100 steps meets every grid step that is a
multiple of 100):

- ``every=N``: the multiples of N;
- the default grid: dense early, log-spaced later. Every 10 steps below step 1000, then every
  tenth of the step's power of ten (every 100 steps from 1000, every 1000 from 10 000, ...),
  since fast grokkers generalize within a few hundred steps and slow ones take tens of thousands.

Without a cap every grid step is evaluated, a probe with ``period`` k runs every k grid
spacings, and snapshots run every probe: the measures at a step do not depend on how often the
loop calls the agent.

**The overhead cap** (default 1 % of the training loop's wall time). The agent times itself: the
wall time inside its calls, the CPU time of its delivery thread, and each evaluation's
*spill-over* (the loop's first step after an evaluation, beyond the step before it: the caches
the evaluation left cold; measured when the loop calls at consecutive steps), against the
loop's wall time since the first call. The call itself (entering and leaving ``step``, with the
caches a training step left cold) cannot be timed from inside: each call is charged
:data:`CALL_SECONDS` for it. The agent aims at the cap less :data:`UNTIMED_SHARE` of it, a
margin for what it still cannot see (cache effects after the first step, its delivery thread's
cache footprint). Its spending falls in these accounts:

- *bookkeeping*: the calls that only record the loss (a few microseconds each) and the
  delivery thread;
- *core*: the reference probe (``loss_accuracy``, the shared forward pass), the probes that
  cost at most :data:`CORE_FRACTION` of it, and each evaluation's own work (detector, forecast,
  record) and spill-over. The core runs at every evaluation;
- *extra*: the other probes and their calibration;
- *one-off*: the first evaluation (which also warms up the code paths). It is taken off the
  core's budget over the whole horizon rather than off the next evaluations, so it does not
  hold the schedule up.

The budget is ``overhead`` times the loop's time per step times a *horizon*: the run's
``budget`` in steps when given, else the steps so far (at least :data:`MIN_HORIZON`).
:data:`EXTRA_SHARE` of it goes to the extra account, paid as the loop runs (never ahead); the
rest, net of the bookkeeping projected over the horizon and of the one-off costs, to the core,
spread over the horizon
like the grid itself: an evaluation at grid step ``s`` runs when the core has spent less than
its budget times ``N(s) / N(horizon)`` (``N`` counts grid steps). So the core keeps the
dense-early, log-spaced shape of the grid, thinned to what the budget pays for. Early in a run
this spends ahead of the wall clock, by at most :data:`MAX_AHEAD` times the pay-as-you-go
share: the cap holds over the horizon (at the end of a run that reaches its ``budget``, and
from step 1000 on without one); a run stopped well before its budget may have spent more.
What the core cannot spend on the grid steps left goes to the extra account.

Extra probes run when the extra account covers their estimated cost, in the order of the time
each would have had after its next run (so each gets a similar share of time: cheap probes run
often, expensive ones rarely), leaving out any that the horizon's extra budget could not pay
:data:`MIN_EXTRA_RUNS` times. A probe not timed yet is
first *calibrated* on :data:`CALIBRATION_ROWS` rows of each probe set (values discarded); its
cost on all rows is extrapolated linearly from the two sizes, so an expensive probe is known to
be expensive before it runs on all rows. Its first run on all rows replaces the estimate.

Under a cap, snapshots keep the arrays of the probes run at that evaluation rather than running
every probe.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence

from grokwatch.exceptions import ConfigError
from grokwatch.probes import Probe

#: The agent's default share of the training loop's wall time.
DEFAULT_OVERHEAD = 0.01
#: What a call to ``Agent.step`` costs the loop outside the time the agent measures inside it
#: (entering and leaving the call right after a training step: 3.9 microseconds a call on the
#: benchmark machine, ``benchmarks/overhead.py``, 0.12 % of the MLP's 3.3 ms step).
CALL_SECONDS = 4e-6
#: The share of the cap the agent leaves unspent: a margin for the costs it cannot see (on the
#: transformer of ``benchmarks/overhead.py`` the measured overhead exceeded the agent's own share
#: by 0.11 points, 0.92 % against 0.81 %, when this margin was 0.15).
UNTIMED_SHARE = 0.25
#: Under a cap, the share of the budget for the extra (expensive) probes and one-off costs.
EXTRA_SHARE = 0.1
#: A probe whose cost is at most this share of the reference probe's runs at every evaluation.
CORE_FRACTION = 0.1
#: The reference probe: the shared forward pass every evaluation needs.
REFERENCE_PROBE = "loss_accuracy"
#: Rows of each probe set a probe is timed on before it runs on all rows.
CALIBRATION_ROWS = (8, 64)
#: Without a run budget, the horizon is the steps so far, and at least this many steps.
MIN_HORIZON = 1000
#: The core never spends more than this multiple of its pay-as-you-go share.
MAX_AHEAD = 2.0
#: An extra probe runs on all rows only if the horizon's extra budget pays this many runs.
MIN_EXTRA_RUNS = 4


def grid_spacing(step: int) -> int:
    """10 below step 1000; from 10**k (k >= 3) on, 10**(k - 1)."""
    if step < 1000:
        return 10
    return int(10 ** (len(str(step)) - 2))


def grid_count(first: int, last: int, every: int | None = None) -> int:
    """How many grid steps lie in ``[first, last]`` (``every``: the multiples of ``every``)."""
    if every is not None:
        return max(last // every - (first - 1) // every, 0)
    count, low = 0, max(first, 0)
    while low <= last:
        spacing = grid_spacing(low)
        top = min(last, 999 if low < 1000 else 10 ** len(str(low)) - 1)
        count += top // spacing - (low - 1) // spacing
        low = top + 1
    return count


def check_overhead(overhead: float | None) -> float | None:
    if overhead is None:
        return None
    if isinstance(overhead, bool) or not isinstance(overhead, int | float):
        raise ConfigError(f"overhead must be a fraction in (0, 1] or None, got {overhead=!r}")
    if not (math.isfinite(overhead) and 0.0 < overhead <= 1.0):
        raise ConfigError(f"overhead must be a fraction in (0, 1] or None, got {overhead=!r}")
    return float(overhead)


@dataclasses.dataclass
class Plan:
    """What one evaluation runs: the ``core`` probes and the ``extras`` on all rows, and at
    most one probe to ``calibrate`` on a few rows. ``first``: the one-off first evaluation (its
    cost is charged to the extra account)."""

    core: list[Probe]
    extras: list[Probe] = dataclasses.field(default_factory=list)
    calibrate: Probe | None = None
    first: bool = False

    @property
    def probes(self) -> list[Probe]:
        """The probes run on all rows, in order."""
        return [*self.core, *self.extras]

    def account(self, probe: Probe) -> str:
        """Where a run of ``probe`` is charged: ``"one_off"``, ``"extra"`` or ``"core"``."""
        if self.first:
            return "one_off"
        return "extra" if any(probe is p for p in self.extras) else "core"


class Schedule:
    """The agent's clock, cadence and probe plan (see the module docstring).

    ``every``: a fixed cadence in steps, or ``None`` for the default grid. ``overhead``: the cap
    on the agent's share of the loop's wall time, or ``None`` for no cap. ``snapshot_every``:
    steps between snapshots, or ``None`` for 1000, 2000, 4000, ... ``budget``: the run's steps,
    the cap's horizon (``None``: twice the steps so far).
    """

    def __init__(
        self,
        every: int | None,
        overhead: float | None,
        snapshot_every: int | None,
        *,
        budget: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
        background: Callable[[], float] | None = None,
    ) -> None:
        self.every = every
        self.overhead = check_overhead(overhead)
        self.target = (self.overhead or 0.0) * (1 - UNTIMED_SHARE)
        """The share the agent aims at: the cap less what it cannot time from inside."""
        self.snapshot_every = snapshot_every
        self.budget = budget
        self.clock = clock
        self.background = background or (lambda: 0.0)
        self.started: float | None = None
        self.first_step: int | None = None
        self.spent = 0.0
        self.core_spent = 0.0
        self.extra_spent = 0.0
        self.one_off = 0.0
        self.evaluations = 0
        self.skipped = 0
        self.next_due = 0
        self.next_snapshot = 0
        self.cost: dict[str, float] = {}
        self.measured: set[str] = set()
        self.eval_cost = 0.0
        self.spill_cost = 0.0
        """Mean spill-over of an evaluation (see :meth:`spilled`)."""
        self.spills = 0
        self.reference_name: str | None = None
        self._next_run: dict[str, int] = {}
        self._extra_time: dict[str, float] = {}
        self._core: list[Probe] = []

    # -- the clock ----------------------------------------------------------------------------

    def enter(self) -> float:
        """Start timing one agent call; the first call starts the loop's clock."""
        now = self.clock()
        if self.started is None:
            self.started = now
        return now

    def leave(self, entered: float) -> None:
        self.spent += self.clock() - entered

    @property
    def loop_seconds(self) -> float:
        return 0.0 if self.started is None else self.clock() - self.started

    def total(self, entered: float | None = None) -> float:
        """Seconds the agent cost so far: inside its calls (and the current one, ``entered``),
        plus its delivery thread's CPU time (``background``)."""
        current = 0.0 if entered is None else self.clock() - entered
        return self.spent + current + self.background()

    def ratio(self) -> float:
        """The agent's share of the loop's wall time so far (see :meth:`total`)."""
        elapsed = self.loop_seconds
        return self.total() / elapsed if elapsed > 0 else 0.0

    def bookkeeping(self, entered: float | None = None) -> float:
        """Seconds spent outside evaluations: calls that only record the loss, and the delivery
        thread."""
        spent = self.core_spent + self.extra_spent + self.one_off
        return max(self.total(entered) - spent, 0.0)

    def credit(self, entered: float) -> float:
        """Seconds the agent may still spend, paid as the loop runs (``inf`` without a cap)."""
        if self.overhead is None:
            return math.inf
        return self.target * self.loop_seconds - self.total(entered)

    # -- the budget ---------------------------------------------------------------------------

    def horizon(self, step: int) -> int:
        """The last step the budget is spread over: the run's budget, else the steps so far
        (and at least :data:`MIN_HORIZON` steps)."""
        first = self.first_step if self.first_step is not None else step
        if self.budget is not None and self.budget > step:
            return self.budget
        return max(step, first + MIN_HORIZON)

    def _core_budget(self, step: int, entered: float) -> float:
        """The core's seconds over the horizon: its share of the budget, net of the
        bookkeeping projected over the horizon (``-inf`` before the step time is known)."""
        first = self.first_step if self.first_step is not None else step
        loop = self.loop_seconds
        if step <= first or loop <= 0:
            return -math.inf
        span = self.horizon(step) - first
        per_step = loop / (step - first)
        bookkeeping = self.bookkeeping(entered) / (step - first)
        share = (1 - EXTRA_SHARE) * self.target * per_step - bookkeeping
        return share * span - self.one_off

    def _core_allowance(self, step: int, entered: float) -> float:
        """Seconds the core may have spent by ``step``: its budget times the share of the
        horizon's grid steps reached, at most :data:`MAX_AHEAD` times (and at least once) its
        pay-as-you-go share."""
        overhead = self.target
        first = self.first_step if self.first_step is not None else step
        loop = self.loop_seconds
        pay = (1 - EXTRA_SHARE) * overhead * loop - self.bookkeeping(entered) - self.one_off
        horizon = self.horizon(step)
        share = grid_count(first, step, self.every) / max(grid_count(first, horizon, self.every), 1)
        ahead = min(
            self._core_budget(step, entered) * share,
            MAX_AHEAD * (1 - EXTRA_SHARE) * overhead * loop,
        )
        return max(pay, ahead)

    def _extra_allowance(self, step: int, entered: float) -> float:
        """Seconds the extra account may have spent by now: its share, paid as the loop runs,
        plus what the core cannot spend on the grid steps left before the horizon (as long as
        the agent's total stays within the pay-as-you-go cap)."""
        overhead = self.target
        loop = self.loop_seconds
        own = EXTRA_SHARE * overhead * loop
        if self.evaluations == 0:
            return own
        per_eval = self.evaluation_cost(self._core)
        left = grid_count(step + 1, self.horizon(step), self.every)
        surplus = self._core_budget(step, entered) - self.core_spent - per_eval * left
        if surplus <= 0:
            return own
        room = overhead * loop - self.bookkeeping(entered) - self.core_spent - self.one_off
        return max(own, min(own + surplus, room))

    def _extra_budget(self, step: int) -> float:
        """The extra account's whole budget over the horizon (``inf`` before it is known)."""
        first = self.first_step if self.first_step is not None else step
        if step <= first or self.loop_seconds <= 0:
            return math.inf
        per_step = self.loop_seconds / (step - first)
        return EXTRA_SHARE * self.target * per_step * (self.horizon(step) - first)

    # -- the cadence --------------------------------------------------------------------------

    def after(self, step: int) -> int:
        """The first grid step after ``step``."""
        spacing = self.every or grid_spacing(step)
        return (step // spacing + 1) * spacing

    def snapshot_after(self, step: int) -> int:
        if self.snapshot_every is not None:
            return step + self.snapshot_every
        return max(1000, 2 * step)

    # -- the probe plan -----------------------------------------------------------------------

    def evaluation_cost(self, core: Sequence[Probe]) -> float:
        """The expected cost of an evaluation running the ``core`` probes: theirs, the
        evaluation's own work and its spill-over."""
        return self.eval_cost + self.spill_cost + self.predicted(core)

    def ready(self, step: int, entered: float) -> bool:
        """Whether grid step ``step`` may be evaluated, checked against the core of the last
        plan: a step the cap refuses then costs little (:meth:`plan` decides the others)."""
        if self.overhead is None or self.evaluations == 0:
            return True
        spend = self.core_spent + self.evaluation_cost(self._core)
        return spend <= self._core_allowance(step, entered)

    def core(self, probe: Probe) -> bool:
        """Under a cap: the reference probe (``loss_accuracy``, else the first probe), and the
        timed probes costing at most :data:`CORE_FRACTION` of it."""
        if probe.name == self.reference_name:
            return True
        reference = self.cost.get(self.reference_name or "")
        cost = self.cost.get(probe.name)
        return reference is not None and cost is not None and cost <= CORE_FRACTION * reference

    def plan(
        self, probes: Sequence[Probe], step: int, snapshot: bool, entered: float
    ) -> Plan | None:
        """The probes to run at grid step ``step``, or ``None`` to skip this grid step.

        Without a cap: every probe due (all of them at a snapshot). Under a cap: the first
        evaluation runs the reference probe (or, without one, the first probe) as a one-off;
        later ones run when the core account allows, with at most one extra probe (or one
        calibration) when the extra account covers it.
        """
        if self.first_step is None:
            self.first_step = step
        if self.overhead is None:
            if snapshot:
                return Plan(list(probes))
            return Plan([p for p in probes if step >= self._next_run.get(p.name, 0)])
        if self.evaluations == 0:
            first = [p for p in probes if p.name == REFERENCE_PROBE] or list(probes[:1])
            if first:
                self.reference_name = first[0].name
            # timed on a few rows first: the run on all rows also warms up, so it is no estimate
            return Plan(first, calibrate=first[0] if first else None, first=True)
        core = [p for p in probes if self.core(p)]
        self._core = core
        allowance = self._core_allowance(step, entered)
        if self.core_spent + self.evaluation_cost(core) > allowance:
            return None
        # the extra probe that would have had the least time after its next run goes first
        # (untimed ones: calibration), leaving out those the horizon's extra budget cannot pay
        # MIN_EXTRA_RUNS times
        affordable = self._extra_budget(step) / MIN_EXTRA_RUNS
        waiting = [
            p
            for p in probes
            if not self.core(p)
            and self.evaluations >= self._next_run.get(p.name, 0)
            and self.cost.get(p.name, 0.0) <= affordable
        ]
        waiting.sort(key=lambda p: self._extra_time.get(p.name, 0.0) + self.cost.get(p.name, 0.0))
        credit = self._extra_allowance(step, entered) - self.extra_spent
        plan = Plan(core)
        for probe in waiting:
            if probe.name not in self.cost:  # one calibration per evaluation, paid afterwards
                if credit >= 0:
                    plan.calibrate = probe
                break
            if self.cost[probe.name] > credit:
                break  # it waits for the credit, and so do the probes that had more time
            plan.extras.append(probe)
            credit -= self.cost[probe.name]
        return plan

    def predicted(self, probes: Sequence[Probe]) -> float:
        return sum(self.cost.get(p.name, 0.0) for p in probes)

    def calibrated(
        self,
        probe: Probe,
        timings: Sequence[tuple[int, float]],
        rows: int,
        seconds: float,
        *,
        one_off: bool = False,
    ) -> None:
        """Record the few-row timings ``(rows, seconds)`` of ``probe``: its cost on ``rows`` rows
        is extrapolated linearly (never below the largest timing). ``seconds`` (the whole
        calibration) is charged to the extra account, or to the one-off costs."""
        if one_off:
            self.one_off += seconds
        else:
            self.extra_spent += seconds
            self._extra_time[probe.name] = self._extra_time.get(probe.name, 0.0) + seconds
        (n0, c0), (n1, c1) = timings[0], timings[-1]
        slope = (c1 - c0) / (n1 - n0) if n1 > n0 else 0.0
        self.cost[probe.name] = max(c1, c1 + slope * (rows - n1))

    def ran(self, probe: Probe, seconds: float, step: int | None, *, account: str = "core") -> None:
        """Record one run of ``probe`` on all rows, charged to ``account`` (``"core"``,
        ``"extra"`` or ``"one_off"``) and, at a scheduled ``step``, when it is due next.

        Without a cap, a probe with period k is next due k grid steps later: at the same steps
        whether the loop calls the agent every step or only at grid steps. Under a cap, after at
        least ``period`` evaluations.
        """
        if account == "core":
            self.core_spent += seconds
        elif account == "one_off":  # a warm-up run: its time is no estimate of the next ones
            self.one_off += seconds
            self.cost.setdefault(probe.name, seconds)
            self._next_run[probe.name] = self.evaluations + probe.period
            return
        else:
            self.extra_spent += seconds
            self._extra_time[probe.name] = self._extra_time.get(probe.name, 0.0) + seconds
        old = self.cost.get(probe.name)
        first_measure = probe.name not in self.measured
        self.measured.add(probe.name)
        self.cost[probe.name] = seconds if old is None or first_measure else 0.5 * (old + seconds)
        if step is None:
            return
        if self.overhead is None:
            due = step
            for _ in range(probe.period):
                due = self.after(due)
            self._next_run[probe.name] = due
        else:
            self._next_run[probe.name] = self.evaluations + probe.period

    def evaluated(self, seconds: float, *, first: bool) -> None:
        """Record an evaluation's own work beyond its probes (detector, forecast, record)."""
        self.evaluations += 1
        if first:
            self.one_off += seconds
            return
        self.core_spent += seconds
        self.eval_cost = seconds if self.evaluations <= 2 else 0.5 * (self.eval_cost + seconds)

    def spilled(self, seconds: float) -> None:
        """Charge the spill-over of the last evaluation: what the loop's next step took beyond
        the step before the evaluation (caches the evaluation left cold). It happens outside
        the agent's calls, so it is added to its time here; the first evaluation's is one-off."""
        self.spent += seconds
        if self.evaluations <= 1:
            self.one_off += seconds
            return
        self.core_spent += seconds
        self.spills += 1
        self.spill_cost += (seconds - self.spill_cost) / self.spills


class _StepClock:
    """A clock counting in training steps (for :func:`planned_steps`)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def planned_steps(
    budget: int,
    evaluation_cost: float,
    *,
    overhead: float | None = DEFAULT_OVERHEAD,
    every: int | None = None,
    first: int = 0,
    one_off: float | None = None,
    call_cost: float = 0.0,
) -> list[int]:
    """The steps a capped agent evaluates in a run of ``budget`` steps, replayed on a clock
    counting training steps (the same :class:`Schedule` the agent uses, so replays of a corpus
    at the default settings see the steps a live agent would).

    ``evaluation_cost``: one evaluation's core (probes and the evaluation's own work) in
    training steps; ``one_off``: the first evaluation's cost (default the same); ``call_cost``:
    a call that only records the loss. Without ``overhead``: every grid step.

    Example: ``planned_steps(3000, 1.2)`` for an MLP whose evaluation costs 1.2 training steps.
    """
    if not (math.isfinite(evaluation_cost) and evaluation_cost >= 0):
        raise ConfigError(f"evaluation_cost must be >= 0, got {evaluation_cost=!r}")
    clock = _StepClock()
    schedule = Schedule(every, overhead, None, budget=budget, clock=clock)
    core = _Constant(REFERENCE_PROBE)
    steps: list[int] = []
    for step in range(first, budget + 1):
        clock.now += 1.0
        entered = schedule.enter()
        clock.now += call_cost
        if step >= schedule.next_due:
            schedule.next_due = schedule.after(step)
            plan = schedule.plan([core], step, False, entered)
            if plan is None:
                schedule.skipped += 1
            else:
                cost = evaluation_cost if not plan.first or one_off is None else one_off
                if plan.calibrate is not None:
                    timings = [(n, evaluation_cost) for n in CALIBRATION_ROWS]
                    schedule.calibrated(core, timings, CALIBRATION_ROWS[-1], 0.0, one_off=True)
                clock.now += cost
                schedule.ran(core, cost, step, account=plan.account(core))
                schedule.evaluated(0.0, first=plan.first)
                steps.append(step)
        schedule.leave(entered)
    return steps


class _Constant(Probe):
    """A stand-in probe for :func:`planned_steps`."""

    def __init__(self, name: str) -> None:
        self.name = name  # type: ignore[misc]

    def compute(self, ctx: object) -> dict[str, float]:  # pragma: no cover - never run
        return {}
