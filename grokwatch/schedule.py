"""When the agent evaluates and which probes run: a cadence under a cap on the agent's cost.

Evaluations happen on a grid of steps, so two loops that call :meth:`Agent.step` at different
rates evaluate at the same steps (a loop calling every 100 steps meets every grid step that is a
multiple of 100):

- ``every=N``: the multiples of N;
- the default grid: dense early, log-spaced later. Every 10 steps below step 1000, then every
  tenth of the step's power of ten (every 100 steps from 1000, every 1000 from 10 000, ...),
  since fast grokkers generalize within a few hundred steps and slow ones take tens of thousands.

The overhead cap: the agent times itself (the wall time spent inside :meth:`Agent.step`) and the
training loop (the wall time since the first call). At a grid step, it evaluates only if the
predicted cost of the probes due fits in the credit ``overhead * loop_time - agent_time``;
otherwise it waits for the next grid step. The predicted cost is a running mean of each probe's
own time. Expensive probes run less often: a probe costing ``c`` runs at most every
``ceil(c / c_ref)`` evaluations, ``c_ref`` being the cost of ``loss_accuracy`` (the shared
forward pass every evaluation needs) or, without it, the median probe cost; so no probe costs
more over time than that forward pass. Snapshots (all probes, arrays kept) wait for credit the
same way; an evaluation that cannot afford its snapshot still runs the probes due.
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

    def affordable(self, seconds: float, entered: float) -> bool:
        """Whether ``seconds`` more of agent time keeps it within the cap (always, without one)."""
        if self.overhead is None:
            return True
        spent = self.spent + (self.clock() - entered)
        return spent + seconds <= self.overhead * self.loop_seconds

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

    def plan(self, probes: Sequence[Probe], snapshot: bool) -> list[Probe]:
        """The probes due at this evaluation (all of them at a snapshot)."""
        if snapshot:
            return list(probes)
        return [p for p in probes if self.evaluations >= self._next_run.get(p.name, 0)]

    def predicted(self, probes: Sequence[Probe]) -> float:
        return sum(self.cost.get(p.name, 0.0) for p in probes)

    def ran(self, probe: Probe, seconds: float) -> None:
        """Record one run of ``probe`` at the current evaluation and when it is due next."""
        old = self.cost.get(probe.name)
        self.cost[probe.name] = seconds if old is None else 0.5 * (old + seconds)
        self._next_run[probe.name] = self.evaluations + self.period(probe)

    def period(self, probe: Probe) -> int:
        """Evaluations between two runs of ``probe``: its own ``period``, stretched by the cap."""
        if self.overhead is None or probe.name not in self.cost:
            return probe.period
        reference = self.cost.get(REFERENCE_PROBE) or statistics.median(self.cost.values())
        if reference <= 0:
            return probe.period
        return max(probe.period, math.ceil(self.cost[probe.name] / reference))
