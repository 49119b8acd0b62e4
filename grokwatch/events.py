"""Online grokking events and rule-based phases.

- ``t_mem``: first evaluation with train accuracy >= ``mem_threshold`` (0.99).
- ``t_grok``: first evaluation with test accuracy >= ``grok_threshold`` (0.90).
- ``gap``: ``t_grok - t_mem``.
- ``sharpness``: steps between 10 % and 90 % of the test-accuracy rise (from its lowest value
  after memorization to the highest seen), linearly interpolated between evaluations and divided
  by ``t_grok`` -- small means abrupt (an abrupt rise takes about 2 % of ``t_grok``).
- Outcome within a budget (Liu et al. 2022 phase names): ``grokking`` when the gap is at least
  ``max(min_gap, t_mem)`` steps -- generalization took at least as long again as memorization --
  ``comprehension`` when the run generalized with less delay, ``memorization`` when it fit the
  train set but never generalized, ``confusion`` when it never fit the train set.
"""

from __future__ import annotations

import array
import collections
import dataclasses
import enum
import math

import numpy as np

from grokwatch.decision import Phase
from grokwatch.exceptions import ConfigError


class Outcome(enum.StrEnum):
    GROKKING = "grokking"
    COMPREHENSION = "comprehension"
    MEMORIZATION = "memorization"
    CONFUSION = "confusion"


@dataclasses.dataclass(frozen=True)
class Events:
    """The events of a run so far (``None`` until they happen)."""

    t_mem: int | None = None
    t_grok: int | None = None
    gap: int | None = None
    sharpness: float | None = None
    last_step: int | None = None


@dataclasses.dataclass(frozen=True)
class EventRules:
    """Thresholds of the event and phase rules; every one is documented in the module."""

    mem_threshold: float = 0.99
    grok_threshold: float = 0.90
    rise: float = 0.10
    """Test-accuracy rise above its post-memorization low that marks the grokking phase."""
    min_gap: int = 250
    """Smallest gap (steps) that counts as delayed generalization, see :func:`outcome`."""
    patience: int = 10
    """Evaluations without ``min_delta`` train-accuracy progress before a run is confused."""
    min_delta: float = 0.01

    def __post_init__(self) -> None:
        for name in ("mem_threshold", "grok_threshold", "rise", "min_delta"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ConfigError(f"{name} must be in (0, 1], got {name}={value!r}")
        if self.min_gap < 0:
            raise ConfigError(f"min_gap must be >= 0, got min_gap={self.min_gap!r}")
        if self.patience < 1:
            raise ConfigError(f"patience must be >= 1, got patience={self.patience!r}")


class EventTracker:
    """Consumes one evaluation at a time and keeps events and phase current.

    Non-finite accuracies are ignored for the events (they cannot cross a threshold); a
    non-finite training loss puts the run in :attr:`Phase.DIVERGED`. The history (``steps``,
    ``train_acc``, ``test_acc``, NaN where not finite) is kept in arrays (``array.array``);
    ``history=False`` keeps only the events and phase (no :meth:`sharpness`), for a caller
    that holds the evaluations itself.
    """

    def __init__(self, rules: EventRules | None = None, *, history: bool = True) -> None:
        self.rules = rules or EventRules()
        self.history = history
        self.steps = array.array("q")
        self.train_acc = array.array("d")
        self.test_acc = array.array("d")
        self.n = 0  # evaluations seen
        self.last_step: int | None = None
        self.t_mem: int | None = None
        self.t_grok: int | None = None
        self._post_mem_low = math.inf
        self._post_mem_low_index: int | None = None
        self.phase = Phase.MEMORIZING
        self._recent_acc: collections.deque[float] = collections.deque()
        self._old_best = -math.inf

    def update(
        self,
        step: int,
        *,
        train_acc: float | None = None,
        test_acc: float | None = None,
        train_loss: float | None = None,
    ) -> Phase:
        r = self.rules
        tr = _finite(train_acc)
        te = _finite(test_acc)
        self.n += 1
        self.last_step = step
        if self.history:
            self.steps.append(step)
            self.train_acc.append(math.nan if tr is None else tr)
            self.test_acc.append(math.nan if te is None else te)
        if tr is not None:
            self._recent_acc.append(tr)
            if len(self._recent_acc) > self.rules.patience:
                self._old_best = max(self._old_best, self._recent_acc.popleft())
        if self.t_mem is None and tr is not None and tr >= r.mem_threshold:
            self.t_mem = step
        if self.t_grok is None and te is not None and te >= r.grok_threshold:
            self.t_grok = step
        tracking_low = self.t_mem is not None and self.t_grok is None
        if tracking_low and te is not None and te < self._post_mem_low:
            self._post_mem_low, self._post_mem_low_index = te, self.n - 1
        self.phase = self._phase(tr, te, train_loss)
        return self.phase

    def _phase(self, tr: float | None, te: float | None, loss: float | None) -> Phase:
        r = self.rules
        if loss is not None and not math.isfinite(loss):
            return Phase.DIVERGED
        if te is not None and te >= r.grok_threshold:
            return Phase.GENERALIZED
        if self.t_mem is None:
            return Phase.CONFUSED if self._stalled() else Phase.MEMORIZING
        if te is not None and te >= self._post_mem_low + r.rise:
            return Phase.GROKKING
        return Phase.PLATEAU

    def _stalled(self) -> bool:
        """No ``min_delta`` gain of the best train accuracy over the last ``patience`` values.

        O(patience) per update: the best value that left the window is kept as a running max.
        """
        if self._old_best == -math.inf:  # not more than ``patience`` values yet
            return False
        return max(self._recent_acc) - self._old_best < self.rules.min_delta

    @property
    def events(self) -> Events:
        gap = None
        if self.t_mem is not None and self.t_grok is not None:
            gap = self.t_grok - self.t_mem
        return Events(
            t_mem=self.t_mem,
            t_grok=self.t_grok,
            gap=gap,
            sharpness=self.sharpness(),
            last_step=self.last_step,
        )

    def sharpness(self) -> float | None:
        """10 %-90 % rise time of test accuracy over ``t_grok`` (see the module docstring;
        ``None`` without a history)."""
        if self.t_grok is None or self.t_grok <= 0 or not self.history:
            return None
        steps = np.asarray(self.steps, dtype=float)
        acc = np.asarray(self.test_acc, dtype=float)
        start = self._post_mem_low_index or 0
        s, a = steps[start:], acc[start:]
        keep = np.isfinite(a)
        s, a = s[keep], a[keep]
        if a.size < 2:
            return None
        low, high = float(a[0]), float(np.max(a))
        if high - low <= 0:
            return None
        t10 = _first_crossing(s, a, low + 0.1 * (high - low))
        t90 = _first_crossing(s, a, low + 0.9 * (high - low))
        if t10 is None or t90 is None:
            return None
        return max(t90 - t10, 0.0) / self.t_grok

    def outcome(self, budget: int | None = None) -> Outcome:
        """The run's outcome counting only evaluations at steps <= ``budget``."""
        limit = math.inf if budget is None else budget
        t_mem = self.t_mem if self.t_mem is not None and self.t_mem <= limit else None
        t_grok = self.t_grok if self.t_grok is not None and self.t_grok <= limit else None
        return outcome(t_mem, t_grok, min_gap=self.rules.min_gap)


def outcome(t_mem: int | None, t_grok: int | None, *, min_gap: int = 250) -> Outcome:
    """Label a run from its events (see the module docstring for the rule)."""
    if t_grok is not None:
        if t_mem is not None and t_grok - t_mem >= max(min_gap, t_mem):
            return Outcome.GROKKING
        return Outcome.COMPREHENSION
    if t_mem is not None:
        return Outcome.MEMORIZATION
    return Outcome.CONFUSION


def fit_sigmoid(steps: np.ndarray, acc: np.ndarray) -> dict[str, float] | None:
    """Least-squares fit of ``c + (d - c) / (1 + exp(-k (t - t0)))`` (the sigmoid of the rise).

    Returns ``{"c", "d", "k", "t0"}`` or ``None`` when the fit fails or the data are too few.
    """
    from scipy.optimize import curve_fit

    keep = np.isfinite(acc)
    t, y = np.asarray(steps, float)[keep], np.asarray(acc, float)[keep]
    if t.size < 5 or float(np.ptp(y)) < 1e-6:
        return None
    scale = max(float(t.max()), 1.0)

    def curve(x: np.ndarray, c: float, d: float, k: float, t0: float) -> np.ndarray:
        z = np.clip(-k * (x / scale - t0), -60, 60)
        return c + (d - c) / (1.0 + np.exp(z))

    mid = float(t[np.argmax(y >= y.min() + 0.5 * np.ptp(y))]) / scale
    try:
        (c, d, k, t0), _ = curve_fit(
            curve, t, y, p0=(float(y.min()), float(y.max()), 20.0, mid), maxfev=5000
        )
    except (RuntimeError, ValueError):
        return None
    return {"c": float(c), "d": float(d), "k": float(k) / scale, "t0": float(t0) * scale}


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _first_crossing(s: np.ndarray, a: np.ndarray, level: float) -> float | None:
    idx = np.flatnonzero(a >= level)
    if idx.size == 0:
        return None
    i = int(idx[0])
    if i == 0:
        return float(s[0])
    a0, a1 = float(a[i - 1]), float(a[i])
    frac = (level - a0) / (a1 - a0) if a1 != a0 else 1.0
    return float(s[i - 1] + frac * (s[i] - s[i - 1]))
