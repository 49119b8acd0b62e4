"""Published early-warning signals, as causal scores the evaluation treats like our forecast.

Each :class:`Baseline` maps a replayed run to one score per evaluation, computed from the
points up to that evaluation only; an *alert* is the first evaluation whose score reaches a
threshold. The evaluation chooses each threshold the same way it chooses ours (false-alarm
rate <= 5 % on calibration runs) and also reports every signal at its best threshold on the
evaluation runs themselves. Where the literature does not fix which way a measure moves
before grokking, ``sign`` is learned on the calibration (training-family) runs: the
orientation with the larger AUROC at 25 % of the gap.

===========================  ============================================================
name                         score at step t (source)
===========================  ============================================================
test_accuracy_rise           test accuracy minus its lowest value since memorization (the
                             rule-based GROKKING phase uses 0.10)
weight_norm                  the L2 norm of all parameters itself, as Wang 2026 use it (AUROC
                             0.98 on their benchmark)
weight_norm_rate             -d log w / d log t over [t / 1.5, t] (Wang 2026: 0.99)
loss_spectral_energy         Hjorth activity of the de-trended train loss over the agent's
                             window, relative to the squared loss (Notsawo et al. 2023)
mc_dropout_variance          variance of test accuracy over MC-dropout passes, p = 0.3 --
                             the peak before grokking (Salah & Yevick 2025)
spectral_entropy_0.609       0.609 - normalized spectral entropy of the penultimate
                             activations: alerts once the entropy falls below 0.609 (Truong
                             2026; fixed threshold, and FAR-matched)
activation_sparsity          fraction of post-ReLU activations below 0.1 (Golechha 2024)
weight_entropy               -(H(W)(t) - H(W)(t_first)) / |H(W)(t_first)| (Golechha 2024)
circuit_complexity           log(C(t) / max C(<= t)), C = approximate local circuit
                             complexity, the KL after zeroing 10 % of a layer (Golechha 2024)
===========================  ============================================================
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from grokwatch.forecast.replay import Replay

__all__ = ["BASELINES", "Baseline", "causal_log_slope", "memorized_mask"]


@dataclasses.dataclass(frozen=True)
class Baseline:
    """One published signal: a causal score per evaluation (higher = more grokking-like
    once ``sign`` is applied)."""

    name: str
    score: Callable[[Replay], np.ndarray]
    source: str
    learn_sign: bool = True
    fixed_threshold: float | None = None
    """A threshold the literature gives (in score units), reported beside the FAR-matched one."""

    def scores(self, run: Replay, sign: float = 1.0) -> np.ndarray:
        s = np.asarray(self.score(run), dtype=float) * sign
        return np.where(np.isfinite(s), s, -np.inf)


def memorized_mask(run: Replay, threshold: float = 0.99) -> np.ndarray:
    """True from the first evaluation with train accuracy >= ``threshold`` on."""
    acc = np.nan_to_num(run.measures["train_accuracy"], nan=-1.0)
    return np.asarray(np.maximum.accumulate(acc >= threshold), dtype=bool)


def _ffill(x: np.ndarray) -> np.ndarray:
    """Carry the last finite value forward (NaN before the first)."""
    idx = np.where(np.isfinite(x), np.arange(x.size), -1)
    idx = np.maximum.accumulate(idx)
    out = np.where(idx >= 0, x[np.maximum(idx, 0)], np.nan)
    return np.asarray(out, dtype=float)


def causal_log_slope(steps: np.ndarray, y: np.ndarray, ratio: float = 1.5) -> np.ndarray:
    """``(log y(t) - log y(t / ratio)) / log ratio`` with ``y`` interpolated from points <= t."""
    out = np.full(steps.size, np.nan)
    ok = np.isfinite(y) & (y > 0)
    s, ly = steps[ok].astype(float), np.log(np.where(ok, y, 1.0)[ok])
    for i, t in enumerate(steps):
        n = int(np.searchsorted(s, t, side="right"))
        if n == 0:
            continue
        past = np.interp(t / ratio, s[:n], ly[:n])
        out[i] = (ly[n - 1] - past) / math.log(ratio)
    return out


def _test_rise(r: Replay) -> np.ndarray:
    acc = _ffill(r.measures["test_accuracy"])
    mem = memorized_mask(r)
    low = np.minimum.accumulate(np.where(mem & np.isfinite(acc), acc, np.inf))
    return np.where(mem & np.isfinite(low), acc - low, 0.0)


def _weight_norm(r: Replay) -> np.ndarray:
    return _ffill(r.measures["weight_norm"])


def _weight_norm_rate(r: Replay) -> np.ndarray:
    return -causal_log_slope(r.steps, r.measures["weight_norm"])


def _loss_energy(r: Replay) -> np.ndarray:
    e, loss = _ffill(r.measures["loss_spectral_energy"]), _ffill(r.measures["train_loss"])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.log(e / loss**2), dtype=float)


def _mc_var(r: Replay) -> np.ndarray:
    return _ffill(r.measures["mc_dropout_accuracy_var"])


def _spectral_entropy(r: Replay) -> np.ndarray:
    return 0.609 - _ffill(r.measures["spectral_entropy"])


def _sparsity(r: Replay) -> np.ndarray:
    return _ffill(r.measures["activation_sparsity"])


def _weight_entropy(r: Replay) -> np.ndarray:
    h = _ffill(r.measures["weight_entropy"])
    finite = h[np.isfinite(h)]
    if finite.size == 0 or finite[0] == 0:
        return np.full(h.size, np.nan)
    return np.asarray(-(h - finite[0]) / abs(finite[0]), dtype=float)


def _circuit(r: Replay) -> np.ndarray:
    c = r.measures["circuit_complexity_mean"]
    if not np.isfinite(c).any():
        c = r.measures["circuit_complexity"]
    c = _ffill(c)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.log(c / np.fmax.accumulate(c)), dtype=float)


BASELINES: tuple[Baseline, ...] = (
    Baseline(
        "test_accuracy_rise",
        _test_rise,
        "test-accuracy rise (the rule-based phases)",
        learn_sign=False,
    ),
    Baseline("weight_norm", _weight_norm, "Wang 2026 (2605.08237)"),
    Baseline("weight_norm_rate", _weight_norm_rate, "Wang 2026 (2605.08237)"),
    Baseline("loss_spectral_energy", _loss_energy, "Notsawo et al. 2023 (2306.13253)"),
    Baseline("mc_dropout_variance", _mc_var, "Salah & Yevick 2025 (2507.11645)", learn_sign=False),
    Baseline(
        "spectral_entropy_0.609",
        _spectral_entropy,
        "Truong 2026 (2604.13123)",
        learn_sign=False,
        fixed_threshold=0.0,
    ),
    Baseline("activation_sparsity", _sparsity, "Golechha 2024 (2405.12755)"),
    Baseline("weight_entropy", _weight_entropy, "Golechha 2024 (2405.12755)"),
    Baseline("circuit_complexity", _circuit, "Golechha 2024 (2405.12755)"),
)
"""Every baseline of the evaluation, in table order."""
