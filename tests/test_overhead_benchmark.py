"""benchmarks/overhead.py: the interleaved-block estimate on synthetic block times, and one
short interleaved run (no timing is asserted)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from _scripts import load_script


@pytest.fixture(scope="module")
def overhead():
    return load_script("benchmarks/overhead.py", "overhead_benchmark")


def synthetic(
    seed: int,
    *,
    pairs: int = 300,
    extra: float = 0.0,
    evaluation: float = 0.0,
    spill: float = 0.0,
    noise: float = 0.002,
) -> dict[str, Any]:
    """Block times of 30 ms with symmetric noise; the watched side ``extra`` slower per block,
    ``evaluation`` more in every 7th pair, and the bare block after such a watched block (odd
    pairs, ABBA order) ``spill`` slower."""
    rng = random.Random(seed)
    evaluated = [1 if k % 7 == 0 else 0 for k in range(pairs)]
    bare = [0.03 + rng.gauss(0, noise) for _ in range(pairs)]
    watched = [0.03 + extra + evaluation * e + rng.gauss(0, noise) for e in evaluated]
    for k in range(1, pairs, 2):
        bare[k] += spill * evaluated[k]
    return {
        "bare_blocks": bare,
        "watched_blocks": watched,
        "bare_cpu": bare,
        "watched_cpu": watched,
        "background_in_bare": [0.0] * pairs,
        "background_seconds": 0.0,
        "evaluations_in_block": evaluated,
        "setup_seconds": 0.0,
        "close_seconds": 0.0,
    }


def test_a_known_overhead_is_recovered_within_its_interval(overhead):
    runs = [synthetic(seed, extra=0.0003) for seed in range(4)]
    result = overhead.block_overhead(runs)
    lo, hi = result["ci95"]
    assert lo < 0.01 < hi and abs(result["overhead"] - 0.01) < 0.002
    assert result["pairs"] == 1200
    low, high = result["spill_over_ci95_ms"]  # none injected: charged only as noise allows
    assert low < 0.0 < high


def test_the_a_a_control_is_zero_within_its_interval(overhead):
    result = overhead.block_overhead([synthetic(seed) for seed in range(4)], clock="wall")
    lo, hi = result["ci95"]
    assert lo < 0.0 < hi


def test_spill_over_into_the_next_bare_block_is_charged_to_the_watched_side(overhead):
    """A bare block slowed by the evaluation before it would lower the plain difference; the
    spill-over is estimated and added back."""
    runs = [synthetic(seed, evaluation=0.005, spill=0.002, noise=0.0005) for seed in range(4)]
    result = overhead.block_overhead(runs)
    assert result["spill_over_ms"] == pytest.approx(2.0, abs=0.3)
    hit = result["bare_after_evaluation_blocks"]
    assert result["spill_over_charged_seconds"] == pytest.approx(0.002 * hit, rel=0.15)
    total_bare = sum(sum(r["bare_blocks"]) for r in runs)
    evaluations = sum(sum(r["evaluations_in_block"]) for r in runs)
    true = 0.005 * evaluations / (total_bare - 0.002 * hit)
    assert result["overhead"] == pytest.approx(true, rel=0.1)


def test_the_delivery_thread_is_charged_to_the_watched_side(overhead):
    run = synthetic(0, noise=0.0)
    run["background_in_bare"] = [0.0001] * len(run["bare_blocks"])
    run["bare_blocks"] = [t + 0.0001 for t in run["bare_blocks"]]
    run["background_seconds"] = 0.05
    wall = overhead.block_overhead([run], clock="wall")
    cpu = overhead.block_overhead([run], clock="cpu")
    total = 0.03 * len(run["bare_blocks"])
    assert wall["overhead"] == pytest.approx(0.0001 * len(run["bare_blocks"]) / total)
    assert cpu["overhead"] == pytest.approx(0.05 / total)


def test_an_interleaved_run_leaves_both_copies_with_the_same_weights(overhead, tmp_path):
    run = overhead.interleaved("mlp", 40, agent_kwargs={}, db=tmp_path / "runs.db")
    assert run["weights_equal"] and run["agent_errors"] == 0
    assert len(run["bare_blocks"]) == len(run["watched_blocks"]) == 4
    assert run["evaluations"] == sum(run["evaluations_in_block"]) >= 1
    assert run["evaluations_in_block"][0] == 1  # step 0: the first step of the first block
    control = overhead.interleaved("mlp", 20, agent_kwargs=None, db=tmp_path / "x.db", swap=True)
    assert control["weights_equal"] and "evaluations" not in control
