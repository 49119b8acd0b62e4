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

The overhead cap: the agent times itself (the wall time spent inside its calls) and the training
loop (the wall time since the first call), and keeps a running mean of each probe's cost. The
budget ``overhead * loop_time`` is split in two halves:

- the *core*: the probes that cost no more than ``loss_accuracy`` (the shared forward pass every
  evaluation needs; without it, the median probe) plus the agent's own bookkeeping. At a grid
  step the agent evaluates only if the core's credit covers the core probes; otherwise it waits
  for the next grid step. So evaluations keep coming at a steady rate;
- the *slow* probes: those costing ``c`` more than the reference ``c_ref``, and probes not timed
  yet. At most one runs per evaluation, when the slow credit is not negative, each at most every
  ``ceil(c / c_ref)`` evaluations (its ``period`` is a minimum), the one waiting longest first.
  One run may leave the slow credit negative; the next slow probe waits until it is paid back,
  so the agent's share exceeds the cap by at most one slow probe's cost, transiently.

Under a cap, snapshots keep the arrays of the probes run at that evaluation rather than running
every probe.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence

from grokwatch.exceptions import ConfigError
from grokwatch.probes import Probe

#: The agent's default share of the training loop's wall time.
DEFAULT_OVERHEAD = 0.01
#: Under a cap, the share of the budget for the probes that cost more than the reference.
SLOW_SHARE = 0.5
#: The reference probe whose cost bounds every other probe's share.
REFERENCE_PROBE = "loss_accuracy"


def grid_spacing(step: int) -> int:
    """10 below step 1000; from 10**k (k >= 3) on, 10**(k - 1)."""
    if step < 1000:
        return 10
    return int(10 ** (len(str(step)) - 2))


def check_overhead(overhead: float | None) -> float | None:
    if overhead is None:
        return None
    if isinstance(overhead, bool) or not isinstance(overhead, int | float):
        raise ConfigError(f"overhead must be a fraction in (0, 1] or None, got {overhead=!r}")
    if not (math.isfinite(overhead) and 0.0 < overhead <= 1.0):
        raise ConfigError(f"overhead must be a fraction in (0, 1] or None, got {overhead=!r}")
    return float(overhead)


class Schedule:
    """The agent's clock, cadence and probe plan (see the module docstring).

    ``every``: a fixed cadence in steps, or ``None`` for the default grid. ``overhead``: the cap
    on the agent's share of the loop's wall time, or ``None`` for no cap. ``snapshot_every``:
    steps between snapshots, or ``None`` for 1000, 2000, 4000, ... (``10 * every`` is the
    agent's default with a fixed cadence).
    """

    def __init__(
        self,
        every: int | None,
        overhead: float | None,
        snapshot_every: int | None,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.every = every
        self.overhead = check_overhead(overhead)
        self.snapshot_every = snapshot_every
        self.clock = clock
        self.started: float | None = None
        self.spent = 0.0
        self.evaluations = 0
        self.skipped = 0
        self.next_due = 0
        self.next_snapshot = 0
        self.cost: dict[str, float] = {}
        self.slow_spent = 0.0
        self._next_run: dict[str, int] = {}

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

    def ratio(self) -> float:
        """The agent's share of the loop's wall time so far (time inside the agent's calls)."""
        elapsed = self.loop_seconds
        return self.spent / elapsed if elapsed > 0 else 0.0

    def credit(self, entered: float) -> float:
        """Seconds the agent may still spend under the cap (``inf`` without one)."""
        if self.overhead is None:
            return math.inf
        spent = self.spent + (self.clock() - entered)
        return self.overhead * self.loop_seconds - spent

    def _core_credit(self, entered: float) -> float:
        spent = self.spent + (self.clock() - entered) - self.slow_spent
        return (1 - SLOW_SHARE) * (self.overhead or 0.0) * self.loop_seconds - spent

    def _slow_credit(self) -> float:
        return SLOW_SHARE * (self.overhead or 0.0) * self.loop_seconds - self.slow_spent

    def allows(self, probes: Sequence[Probe], entered: float) -> bool:
        """Whether the core share of the credit covers the core probes (always, without a cap)."""
        if self.overhead is None:
            return True
        core = sum(self.cost[p.name] for p in probes if not self.slow(p))
        return self._core_credit(entered) >= core

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

    def slow(self, probe: Probe) -> bool:
        """Under a cap: a probe not timed yet, or one that costs more than the reference."""
        return probe.name not in self.cost or self.period(probe) > 1

    def plan(self, probes: Sequence[Probe], step: int, snapshot: bool) -> list[Probe]:
        """The probes due at ``step`` (without a cap, all of them at a snapshot)."""
        if self.overhead is None:
            if snapshot:
                return list(probes)
            return [p for p in probes if step >= self._next_run.get(p.name, 0)]
        core = [p for p in probes if not self.slow(p)]
        if self._slow_credit() < 0:
            return core
        waiting = [
            p for p in probes if self.slow(p) and self.evaluations >= self._next_run.get(p.name, -1)
        ]
        waiting.sort(key=lambda p: self._next_run.get(p.name, -1))  # untimed first
        return core + waiting[:1]

    def cheap(self, probes: Sequence[Probe]) -> list[Probe]:
        """The probes an extra snapshot may run: all without a cap, else the core ones."""
        if self.overhead is None:
            return list(probes)
        return [p for p in probes if not self.slow(p)]

    def predicted(self, probes: Sequence[Probe]) -> float:
        return sum(self.cost.get(p.name, 0.0) for p in probes)

    def ran(self, probe: Probe, seconds: float, step: int | None) -> None:
        """Record one run of ``probe`` and, at a scheduled ``step``, when it is due next.

        Without a cap, a probe with period k is next due k grid steps later: at the same steps
        whether the loop calls the agent every step or only at grid steps. Under a cap, k
        evaluations later.
        """
        if self.overhead is not None and self.slow(probe):
            self.slow_spent += seconds
        old = self.cost.get(probe.name)
        self.cost[probe.name] = seconds if old is None else 0.5 * (old + seconds)
        if step is None:
            return
        if self.overhead is None:
            due = step
            for _ in range(probe.period):
                due = self.after(due)
            self._next_run[probe.name] = due
        else:
            self._next_run[probe.name] = self.evaluations + self.period(probe)

    def period(self, probe: Probe) -> int:
        """Evaluations between two runs of ``probe`` under the cap: its ``period`` or more."""
        if self.overhead is None or probe.name not in self.cost:
            return probe.period
        reference = self.cost.get(REFERENCE_PROBE) or statistics.median(self.cost.values())
        if reference <= 0:
            return probe.period
        return max(probe.period, math.ceil(self.cost[probe.name] / reference))
