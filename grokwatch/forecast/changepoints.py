"""Online change points on measure streams, as typed events.

Grokking curves are trends, not steps: test accuracy sits flat, then climbs; the weight norm
grows, peaks and decays. Both detectors here therefore watch the *slope* of each measure per
unit of log-step, sampled on a log-time grid (:class:`LogTimeSlopes`): a new observation is
taken whenever the step has grown by a factor ``ratio`` (default 1.1) since the last one, and
it is the measure's change over that interval divided by the interval's length in log-steps.
A regime is a stretch of roughly constant slope, so a change point is where the trend bends.
Sampling in log time makes the detectors cadence-free: a run evaluated every 50 steps and the
same run evaluated every 500 steps give (nearly) the same observations once the cadence is
finer than 10 % of the step.

Two methods share that input and the :class:`ChangePoint` event type:

- :class:`BayesianOnlineCPD` -- Adams & MacKay (2007), "Bayesian online changepoint
  detection", arXiv:0710.3742: a run-length posterior with a Normal-Gamma model of each
  regime (Student-t predictive) and a constant hazard per log-step, vectorized over all streams
  at once and truncated at ``max_run`` run lengths, so an update costs the same whatever the
  history.
- :class:`WindowKernelCPD` -- ruptures ``KernelCPD(kernel="linear")`` (the only offline method
  cheap enough to rerun on every update) on a bounded window of the latest
  ``window`` observations, penalized by a BIC-like ``penalty * sigma^2 * log(n)``.

A change point is reported once, after ``confirm`` further observations agree with it; its
``step`` is the first step of the new regime and its ``strength`` the shift of the mean slope
in units of the pooled standard deviation (with a floor, so a perfectly smooth curve does not
give infinite strengths). ``direction`` says whether the slope went up or down.
"""

from __future__ import annotations

import array
import bisect
import functools
import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from scipy.special import gammaln

from grokwatch.decision import ChangePoint, ChangePointMethod, Direction

__all__ = [
    "BayesianOnlineCPD",
    "ChangePoint",
    "ChangePointDetector",
    "ChangePointMethod",
    "Direction",
    "LogTimeSlopes",
    "WindowKernelCPD",
    "shift_strength",
]


def shift_strength(before: np.ndarray, after: np.ndarray, floor: float = 0.05) -> float:
    """``|mean(after) - mean(before)|`` over the pooled standard deviation plus ``floor``."""
    nb, na = before.size, after.size
    if nb == 0 or na == 0:
        return 0.0
    # np.add.reduce over every element: what ``mean`` and ``np.sum`` do, without their wrappers
    mean_before = np.add.reduce(before, axis=None) / nb
    mean_after = np.add.reduce(after, axis=None) / na
    pooled = 0.0
    if nb + na > 2:
        ss = float(
            np.add.reduce((before - mean_before) ** 2, axis=None)
            + np.add.reduce((after - mean_after) ** 2, axis=None)
        )
        pooled = math.sqrt(ss / max(nb + na - 2, 1))
    return abs(float(mean_after - mean_before)) / (pooled + floor)


class LogTimeSlopes:
    """Turns irregular evaluations of K measures into slope observations on a log-time grid.

    ``update(step, y)`` takes the (already transformed, e.g. log) values ``y`` of the K
    measures at ``step`` and returns ``(grid_step, slopes)`` when the step has grown by at
    least ``ratio`` since the previous grid point, else ``None``. A measure that is NaN at a
    grid point keeps its last finite value as the interval's end point; its slope is NaN when
    it has no finite value at either end.
    """

    def __init__(self, n: int, *, ratio: float = 1.1, min_step: int = 1) -> None:
        if ratio <= 1.0:
            raise ValueError(f"ratio must be > 1, got {ratio=}")
        self.ratio = ratio
        self.min_step = max(int(min_step), 1)
        self._last_step: int | None = None
        self._last_y = np.full(n, np.nan)
        self._pending = np.full(n, np.nan)

    def update(self, step: int, y: np.ndarray) -> tuple[int, np.ndarray] | None:
        obs = self.update_many([step], np.asarray(y, dtype=float)[None, :])
        return obs[-1] if obs else None

    def update_many(
        self, steps: Sequence[int], y: np.ndarray, *, log: Sequence[int] = ()
    ) -> list[tuple[int, np.ndarray]]:
        """``update`` on each row of ``y`` ``(n, K)`` at ``steps`` (increasing) in turn: the
        observations those calls return, in order, in one pass of array operations. Streams
        in ``log`` are observed on a log scale: ``update`` with ``math.log`` of their values
        (NaN for values <= 0), taken only of the values an observation reads."""
        n = len(steps)
        if n == 0:
            return []
        # the pending value after row i: each stream's last finite value up to row i
        valid = np.isfinite(y)
        if log:
            valid[:, log] &= y[:, log] > 0
        last = np.where(valid, np.arange(n)[:, None], -1)
        np.maximum.accumulate(last, axis=0, out=last)
        before, streams = self._pending, np.arange(y.shape[1])

        def pending(i: int) -> np.ndarray:
            got = last[i] >= 0
            out = np.where(got, y[np.maximum(last[i], 0), streams], before)
            for k in log:
                if got[k]:
                    out[k] = math.log(out[k])
            return out

        out: list[tuple[int, np.ndarray]] = []
        i = bisect.bisect_left(steps, self.min_step)  # rows before min_step only fill pending
        if self._last_step is None and i < n:
            self._last_step, self._last_y = steps[i], pending(i)
            i += 1
        while self._last_step is not None:
            i = bisect.bisect_left(steps, self._last_step * self.ratio, lo=i)
            if i >= n:
                break
            step, now = steps[i], pending(i)
            slopes = (now - self._last_y) / math.log(step / self._last_step)
            self._last_step, self._last_y = step, now
            out.append((step, slopes))
            i += 1
        self._pending = pending(n - 1)
        return out


class ChangePointDetector(Protocol):
    """What both methods offer: feed slope observations, get newly confirmed change points."""

    measures: tuple[str, ...]

    def update(self, step: int, x: np.ndarray) -> list[ChangePoint]: ...


class _History:
    """The last ``size`` grid observations of every stream (for strengths and windows), in a
    buffer that doubles up to ``2 * size`` rows and is then compacted when full (no copy per
    observation)."""

    def __init__(self, k: int, size: int) -> None:
        self.size = size
        self.steps = array.array("q")
        self._buf = np.full((min(8, 2 * size), k), np.nan)
        self._n = 0

    @property
    def x(self) -> np.ndarray:
        """The kept observations, oldest first, ``(n, K)`` (a view)."""
        return self._buf[max(self._n - self.size, 0) : self._n]

    def append(self, step: int, x: np.ndarray) -> None:
        if self._n == len(self._buf):
            if len(self._buf) < 2 * self.size:  # grow (a young run holds few observations)
                grown = np.full(
                    (min(2 * len(self._buf), 2 * self.size), self._buf.shape[1]), np.nan
                )
                grown[: self._n] = self._buf
                self._buf = grown
            else:  # full: keep the last ``size`` rows
                self._buf[: self.size] = self._buf[self._n - self.size : self._n]
                self._n = self.size
        self._buf[self._n] = x
        self._n += 1
        self.steps.append(step)
        if len(self.steps) > self.size:
            del self.steps[: len(self.steps) - self.size]


@functools.lru_cache(maxsize=16)
def _prior_tables(kappa0: float, alpha0: float, r: int) -> np.ndarray:
    """The regime constants after j = 0 .. r-1 observations, ``(9, r)``: kappa and alpha
    (each observation adds 1 and 1/2, summed in the order the updates add them), the
    Student-t normalizer ``gammaln((nu + 1) / 2) - gammaln(nu / 2)``, then what the filter
    computes from them -- ``nu = 2 alpha``, ``kappa + 1``, ``alpha kappa``, ``nu pi``,
    ``(nu + 1) / 2``, ``2 (kappa + 1)`` -- each as the filter would compute it."""
    kappa, alpha = np.empty(r), np.empty(r)
    kappa[0], alpha[0] = kappa0, alpha0
    for j in range(1, r):
        kappa[j], alpha[j] = kappa[j - 1] + 1.0, alpha[j - 1] + 0.5
    nu = 2.0 * alpha
    norm = gammaln((nu + 1.0) / 2.0) - gammaln(nu / 2.0)
    kappa1 = kappa + 1.0
    rows = (kappa, alpha, norm, nu, kappa1, alpha * kappa, nu * math.pi, (nu + 1.0) / 2.0)
    table = np.stack([*rows, 2.0 * kappa1])
    table.flags.writeable = False
    return table


@functools.lru_cache(maxsize=1024)
def _constants_at(kappa0: float, alpha0: float, r: int, seen: int) -> np.ndarray:
    """:func:`_prior_tables` read at run lengths ``0 .. r-1`` of a stream that has seen
    ``seen`` observations (run length j has the constants of ``min(j, seen)``)."""
    out: np.ndarray = _prior_tables(kappa0, alpha0, r)[:, np.minimum(np.arange(r), seen)]
    out.flags.writeable = False
    return out


class BayesianOnlineCPD:
    """Adams & MacKay (2007) run-length filtering, vectorized over K streams.

    Each regime is Gaussian with unknown mean and variance (Normal-Gamma prior ``mu0, kappa0,
    alpha0, beta0``); the hazard of a change between grid points ``dt`` log-steps apart is
    ``1 - exp(-dt / expected_run)`` (``expected_run`` in log-steps: 1.0 = one change per
    e-fold of the step on average). Run lengths are truncated at ``max_run`` (the last bin
    absorbs longer ones). A change point is reported when the most probable run length says
    the current regime began at least one observation later than the regime last reported, it
    has lasted ``confirm`` observations after its first, and the posterior mass on run lengths
    up to that one is at least ``min_probability``. NaN observations leave a stream untouched.
    """

    method = ChangePointMethod.BAYES

    def __init__(
        self,
        measures: Sequence[str],
        *,
        expected_run: float = 1.0,
        max_run: int = 64,
        mu0: float = 0.0,
        kappa0: float = 0.1,
        alpha0: float = 1.0,
        beta0: float = 0.01,
        confirm: int = 1,
        min_probability: float = 0.5,
        min_strength: float = 2.0,
    ) -> None:
        self.measures = tuple(measures)
        k, r = len(self.measures), max_run + 1
        self.expected_run = expected_run
        self.max_run = max_run
        self.prior = (mu0, kappa0, alpha0, beta0)
        self.confirm = confirm
        self.min_probability = min_probability
        self.min_strength = min_strength
        self.log_r = np.full((k, r), -np.inf)
        self.log_r[:, 0] = 0.0
        self.mu = np.full((k, r), mu0)
        self.beta = np.full((k, r), beta0)
        # kappa and alpha of run length r are those of min(r, observations since the stream's
        # start): kept as that count, read from shared tables (less memory per run)
        self._seen = np.zeros(k, dtype=np.int64)
        self._bins = np.arange(r)
        self._first = np.full((k, 2), [mu0, beta0])  # mu and beta of a new regime
        self.n_obs = np.zeros(k, dtype=np.int64)
        self.start = np.zeros(k, dtype=np.int64)
        self._hist = _History(k, max_run + 1)
        self._last_step: int | None = None

    def update(self, step: int, x: np.ndarray) -> list[ChangePoint]:
        x = np.asarray(x, dtype=float)
        self._hist.append(step, x)
        dt = 1.0 if self._last_step is None else math.log(max(step, 1) / max(self._last_step, 1))
        self._last_step = step
        hazard = 1.0 - math.exp(-max(dt, 1e-6) / self.expected_run)
        ok = np.isfinite(x)
        if not ok.any():
            return []
        with np.errstate(all="ignore"):
            self._filter(x, ok, hazard)
        return self._confirmed(step, ok)

    @property
    def kappa(self) -> np.ndarray:
        """Normal-Gamma kappa of every stream and run length, ``(K, R)``."""
        return np.broadcast_to(self._constants()[0], self.mu.shape).copy()

    @property
    def alpha(self) -> np.ndarray:
        """Normal-Gamma alpha of every stream and run length, ``(K, R)``."""
        return np.broadcast_to(self._constants()[1], self.mu.shape).copy()

    def _constants(self) -> np.ndarray:
        """The rows of :func:`_prior_tables` at every run length: ``(9, R)`` when every stream
        has seen as many observations (the usual case: one shared row each), else
        ``(9, K, R)``."""
        _, kappa0, alpha0, _ = self.prior
        r = self.max_run + 1
        seen = self._seen.tolist()
        lo, hi = min(seen), max(seen)
        if lo == hi:
            return _constants_at(kappa0, alpha0, r, min(lo, r - 1))
        index = np.minimum(self._bins[None, :], self._seen[:, None])
        return _prior_tables(kappa0, alpha0, r)[:, index]

    def _filter(self, x: np.ndarray, ok: np.ndarray, hazard: float) -> None:
        xs = np.where(ok, x, 0.0)[:, None]  # (K, 1)
        kappa, _, norm, nu, kappa1, alpha_kappa, nu_pi, half_nu1, two_kappa1 = self._constants()
        mu, beta = self.mu, self.beta
        scale2 = beta * kappa1 / alpha_kappa
        d2 = (xs - mu) ** 2
        log_pred = (
            norm - 0.5 * np.log(nu_pi * scale2) - half_nu1 * np.log1p(d2 / (nu * scale2))
        )  # (K, R)
        joint = self.log_r + log_pred
        growth = joint + math.log1p(-hazard)
        cp = np.logaddexp.reduce(joint, axis=1) + math.log(hazard)  # (K,)
        new_r = np.empty_like(self.log_r)
        new_r[:, 0] = cp
        new_r[:, 1:] = growth[:, :-1]
        new_r[:, -1] = np.logaddexp(new_r[:, -1], growth[:, -1])
        new_r -= np.logaddexp.reduce(new_r, axis=1, keepdims=True)
        first = self._first
        new_mu = np.concatenate((first[:, :1], ((kappa * mu + xs) / kappa1)[:, :-1]), axis=1)
        new_beta = np.concatenate((first[:, 1:], (beta + kappa * d2 / two_kappa1)[:, :-1]), axis=1)
        if ok.all():
            self.mu, self.beta, self.log_r = new_mu, new_beta, new_r
        else:
            self.mu[ok], self.beta[ok], self.log_r[ok] = new_mu[ok], new_beta[ok], new_r[ok]
        self._seen += ok
        broken = ok & ~np.isfinite(self.log_r).any(axis=1)
        if broken.any():  # overflowed on absurd input: forget the stream's history
            m0, _, _, b0 = self.prior
            self.log_r[broken] = -np.inf
            self.log_r[broken, 0] = 0.0
            self.mu[broken], self.beta[broken] = m0, b0
            self._seen[broken] = 0
        self.n_obs += ok

    def _confirmed(self, step: int, ok: np.ndarray) -> list[ChangePoint]:
        out: list[ChangePoint] = []
        run = np.argmax(self.log_r, axis=1)
        new_starts = self.n_obs - run  # index, among a stream's observations, of the regime start
        candidates = ok & (run >= 1 + self.confirm) & (new_starts > self.start + 1)
        if not candidates.any():
            return out
        x = self._hist.x
        for k in np.flatnonzero(candidates).tolist():
            r, new_start, old_start = int(run[k]), int(new_starts[k]), int(self.start[k])
            mass = float(np.exp(np.logaddexp.reduce(self.log_r[k, : r + 1])))
            if mass < self.min_probability:
                continue
            col = x[:, k]
            rows = np.flatnonzero(np.isfinite(col))  # the last rows.size observations
            first_kept = int(self.n_obs[k]) - rows.size
            lo = max(old_start, first_kept) - first_kept
            mid = new_start - first_kept
            if mid <= lo or mid < 1:
                continue
            before, after = col[rows[lo:mid]], col[rows[mid:]]
            strength = shift_strength(before, after)
            if strength < self.min_strength:
                continue
            self.start[k] = new_start
            out.append(
                ChangePoint(
                    measure=self.measures[k],
                    step=self._hist.steps[int(rows[mid])],
                    direction=Direction.UP if after.mean() > before.mean() else Direction.DOWN,
                    strength=strength,
                    method=self.method,
                    detected_at=step,
                    slope_before=float(before.mean()),
                    slope_after=float(after.mean()),
                )
            )
        return out


class WindowKernelCPD:
    """ruptures ``KernelCPD(kernel="linear")`` rerun on the last ``window`` observations.

    On every observation, each stream's window is segmented with the penalty
    ``penalty * sigma^2 * log(n)`` (sigma from the median absolute successive difference, a
    noise estimate that ignores the trend changes themselves). A breakpoint is reported when it
    lies at least ``confirm`` observations before the window's end, no reported change point of
    the stream lies within ``tolerance`` observations of it, and its strength is at least
    ``min_strength``. Cost: one ruptures call per stream per grid observation (a few tens of
    µs at ``window=48``).
    """

    method = ChangePointMethod.KERNEL

    def __init__(
        self,
        measures: Sequence[str],
        *,
        window: int = 48,
        penalty: float = 3.0,
        confirm: int = 2,
        tolerance: int = 3,
        min_strength: float = 2.0,
        min_size: int = 2,
        sigma_floor: float = 0.02,
    ) -> None:
        import ruptures  # noqa: F401  (fail early if missing)

        if window < 2 * min_size + 1:
            raise ValueError(f"window must be > 2 * min_size, got {window=}, {min_size=}")
        self.measures = tuple(measures)
        self.window = window
        self.penalty = penalty
        self.confirm = confirm
        self.tolerance = tolerance
        self.min_strength = min_strength
        self.min_size = min_size
        self.sigma_floor = sigma_floor
        self._hist = _History(len(self.measures), window)
        self._n = 0
        self._reported: list[list[int]] = [[] for _ in self.measures]

    def update(self, step: int, x: np.ndarray) -> list[ChangePoint]:
        import ruptures as rpt

        self._hist.append(step, np.asarray(x, dtype=float))
        self._n += 1
        offset = self._n - len(self._hist.steps)  # global index of the window's first row
        out: list[ChangePoint] = []
        for k, name in enumerate(self.measures):
            col = self._hist.x[:, k]
            valid = np.flatnonzero(np.isfinite(col))
            if valid.size < 2 * self.min_size + self.confirm:
                continue
            signal = col[valid]
            diffs = np.abs(np.diff(signal))
            sigma = max(float(np.median(diffs)) / (0.6745 * math.sqrt(2.0)), self.sigma_floor)
            pen = self.penalty * sigma**2 * math.log(signal.size)
            algo = rpt.KernelCPD(kernel="linear", min_size=self.min_size, jump=1)
            bkps = algo.fit(signal[:, None]).predict(pen=pen)
            edges = [0, *bkps]
            for j in range(1, len(edges) - 1):
                b = edges[j]
                if signal.size - b < self.confirm:
                    continue
                g = offset + int(valid[b])
                if any(abs(g - r) <= self.tolerance for r in self._reported[k]):
                    continue
                before, after = signal[edges[j - 1] : b], signal[b : edges[j + 1]]
                strength = shift_strength(before, after)
                if strength < self.min_strength:
                    continue
                self._reported[k].append(g)
                out.append(
                    ChangePoint(
                        measure=name,
                        step=self._hist.steps[int(valid[b])],
                        direction=Direction.UP if after.mean() > before.mean() else Direction.DOWN,
                        strength=strength,
                        method=self.method,
                        detected_at=step,
                        slope_before=float(before.mean()),
                        slope_after=float(after.mean()),
                    )
                )
        return out
