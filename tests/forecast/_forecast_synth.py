"""Seeded synthetic runs with known events, in the corpus format (for the forecast tests).

A run memorizes at ``t_mem``; a grokking run's weight norm starts falling at ``t_grok - lead``
and its test accuracy jumps at ``t_grok``; a memorizing run's norm keeps growing slowly and its
test accuracy stays low. Scales (norm, losses, circuit complexity) are drawn per run, so a
forecaster that reads them raw cannot separate the classes.
"""

from __future__ import annotations

import numpy as np

from trainer.corpus import Run

COLUMNS = (
    "train_accuracy",
    "test_accuracy",
    "train_loss",
    "test_loss",
    "weight_norm",
    "weight_entropy",
    "activation_sparsity",
    "spectral_entropy",
    "grad_weight_cosine",
    "circuit_complexity_mean",
    "mc_dropout_accuracy_var",
    "mc_dropout_accuracy_mean",
    "softmax_collapse",
    "loss_spectral_energy",
    "loss_hjorth_mobility",
)


def _sig(t: np.ndarray, t0: float, width: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip((t - t0) / width, -60, 60)))


def make_run(
    seed: int,
    *,
    groks: bool,
    every: int = 50,
    family: str = "synth",
    split: str = "train",
    config_id: int | None = None,
) -> Run:
    rng = np.random.default_rng(seed)
    t_mem = int(rng.choice([100, 150, 200, 300]))
    budget = int(rng.choice([3000, 4000, 5000]))
    gap = int(rng.integers(6, 40)) * 50
    t_grok_true = t_mem + gap if groks else None
    steps = np.r_[1, np.arange(every, budget + 1, every)].astype(np.int64)
    t = steps.astype(float)
    train = 0.02 + 0.98 * _sig(t, t_mem * 0.7, t_mem * 0.08)
    if groks:
        test = 0.03 + 0.97 * _sig(t, t_grok_true - 40, 25)  # type: ignore[operator]
        lead = gap * rng.uniform(0.5, 0.9)
        decay = _sig(t, t_grok_true - lead, gap * 0.08)  # type: ignore[operator]
    else:
        test = 0.03 + 0.02 * _sig(t, t_mem, 50)
        decay = np.zeros_like(t)
    scale = rng.uniform(5, 200)
    norm = scale * (1 + 0.5 * _sig(t, t_mem * 0.5, t_mem * 0.2)) * (1 - 0.4 * decay)
    loss_scale = rng.uniform(0.5, 5)
    train_loss = loss_scale * (1 - train + 1e-3) * (1 - 0.5 * decay)
    test_loss = loss_scale * (1 + 4 * _sig(t, t_mem, 50)) * (1 - test + 0.05)
    cc = rng.uniform(0.1, 10) * (1 + _sig(t, t_mem, 100)) * (1 - 0.6 * decay)
    values = {
        "train_accuracy": np.minimum(train, 1.0),
        "test_accuracy": test,
        "train_loss": train_loss,
        "test_loss": test_loss,
        "weight_norm": norm,
        "weight_entropy": -norm * 3.0,
        "activation_sparsity": 0.5 + 0.2 * decay,
        "spectral_entropy": 0.9 - 0.3 * decay,
        "grad_weight_cosine": 0.7 + 0.1 * decay,
        "circuit_complexity_mean": cc,
        "mc_dropout_accuracy_var": 1e-4 + 1e-3 * decay * (1 - test),
        "mc_dropout_accuracy_mean": test * 0.9,
        "softmax_collapse": np.zeros_like(t),
        "loss_spectral_energy": (train_loss * 0.01) ** 2,
        "loss_hjorth_mobility": np.full_like(t, 0.08),
    }
    arr = np.stack([values[c] for c in COLUMNS], axis=1)
    arr = arr * (1 + rng.normal(0, 0.003, arr.shape))
    arr[:, 0] = np.clip(arr[:, 0], 0, 1)
    arr[:, 1] = np.clip(arr[:, 1], 0, 1)
    # labels from the series, as the agent's tracker would give them
    t_mem_obs = int(steps[np.argmax(arr[:, 0] >= 0.99)]) if (arr[:, 0] >= 0.99).any() else None
    hit = arr[:, 1] >= 0.9
    t_grok_obs = int(steps[np.argmax(hit)]) if hit.any() else None
    if t_grok_obs is not None:  # stop after a tail, as the corpus does
        keep = steps <= t_grok_obs + max(500, t_grok_obs // 2)
        steps, arr = steps[keep], arr[keep]
    outcome = "grokking" if t_grok_obs is not None else "memorization"
    gap_obs = None if t_grok_obs is None or t_mem_obs is None else t_grok_obs - t_mem_obs
    meta = {
        "run_id": f"{family}-{seed:04d}",
        "family": family,
        "split": split,
        "status": "ok",
        "config": {
            "steps": budget,
            "seed": seed,
            "config_id": seed if config_id is None else config_id,
        },
        "labels": {
            "outcome": outcome,
            "t_mem": t_mem_obs,
            "t_grok": t_grok_obs,
            "gap": gap_obs,
            "sharpness": None,
            "budget": budget,
        },
        "every": every,
    }
    return Run(meta, steps, COLUMNS, arr.astype(np.float32))


def make_corpus(n: int, *, seed: int = 0, family: str = "synth", split: str = "train") -> list[Run]:
    """``n`` runs, alternating grokking / memorizing; pairs of runs share a configuration."""
    return [
        make_run(seed * 1000 + i, groks=i % 2 == 0, family=family, split=split, config_id=i // 4)
        for i in range(n)
    ]
