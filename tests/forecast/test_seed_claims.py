"""benchmarks/seed_claims.py: the delay comparison and its verdict on synthetic runs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from _scripts import load_script


def _module():
    return load_script("benchmarks/seed_claims.py")


def _runs(group, gaps, t_mem=100, failures=0):
    runs = [
        SimpleNamespace(
            group=group,
            labels={"outcome": "grokking", "t_mem": t_mem, "t_grok": t_mem + int(g)},
        )
        for g in gaps
    ]
    runs += [
        SimpleNamespace(group=group, labels={"outcome": "memorization", "t_mem": t_mem})
        for _ in range(failures)
    ]
    return runs


def test_a_clearly_shorter_gap_holds_the_same_gap_is_not_shown_a_longer_one_is_opposite():
    m = _module()
    rng = np.random.default_rng(0)
    a = _runs("a", rng.normal(1000, 100, 60), failures=20)
    verdicts = {}
    for name, centre in (("shorter", 500), ("same", 1000), ("longer", 2000)):
        b = _runs("b", rng.normal(centre, 100, 60))
        out = m.compare(
            name, a + b, ("a", lambda r: r.group == "a"), ("b", lambda r: r.group == "b"), "claim"
        )
        verdicts[name] = out["verdict"]
        assert out["groups"]["a"]["n_runs"] == 80 and out["groups"]["a"]["n_generalized"] == 60
        assert out["groups"]["a"]["generalized_share"] == 0.75
        d = out["gap_difference"]
        assert d["low"] <= d["median_b_minus_a"] <= d["high"]
    assert verdicts == {"shorter": "holds", "same": "not shown", "longer": "opposite"}
    few = m.compare("none", a, ("a", lambda r: True), ("b", lambda r: False), "claim")
    assert few["verdict"] == "too few runs"
    # two fast runs are no evidence, however narrow the bootstrap of their median
    two = _runs("b", [100, 110])
    out = m.compare(
        "two", a + two, ("a", lambda r: r.group == "a"), ("b", lambda r: r.group == "b"), "c"
    )
    assert out["gap_difference"]["high"] < 0 and out["verdict"] == "too few runs"


def test_the_one_hot_claim_is_also_compared_on_addition_alone():
    """Seed 003 states the one-hot claim for addition: beside the comparison over every
    operation comes one over the ``op: add`` runs only, made from those runs alone."""
    m = _module()
    rng = np.random.default_rng(1)

    def mlps(embedding, op, gaps):
        out = _runs(op, gaps)
        for r in out:
            r.family, r.config = "mlp", {"embedding": embedding, "op": op}
        return out

    # one-hot is faster on addition, slower on multiplication
    pool = mlps(True, "add", rng.normal(1000, 100, 40)) + mlps(
        False, "add", rng.normal(400, 50, 40)
    )
    pool += mlps(True, "mul", rng.normal(500, 50, 40)) + mlps(
        False, "mul", rng.normal(2000, 100, 80)
    )
    comps = {c["name"]: c for c in m.delay_comparisons(pool, "v9")}
    assert list(comps) == [
        "embedding vs one-hot MLP (v9)",
        "embedding vs one-hot MLP, addition (v9)",
    ]
    every, add = comps.values()
    assert every["groups"]["one-hot"]["n_runs"] == 120 and every["verdict"] == "opposite"
    assert add["groups"]["one-hot"]["n_runs"] == 40 and add["groups"]["embedding"]["n_runs"] == 40
    assert add["verdict"] == "holds"
