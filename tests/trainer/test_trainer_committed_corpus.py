"""The committed corpus is the deliverable the forecaster is fitted and judged on: these tests
read ``trainer/data/corpus_v1`` as shipped and check what docs/corpus.md promises of it."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from trainer.corpus import OUTCOMES, load

CORPUS = Path(__file__).resolve().parents[2] / "trainer" / "data" / "corpus_v1"


@pytest.fixture(scope="module")
def corpus():
    return load(CORPUS, include_failed=True)


def shares(runs) -> dict[str, float]:
    counts = Counter(r.outcome for r in runs)
    return {o: counts[o] / len(runs) for o in OUTCOMES}


def test_training_family_size_and_outcome_mix(corpus):
    training = [r for r in corpus if r.family == "mlp" and r.status == "ok"]
    n = len(training)
    assert n >= 800
    mix = shares(training)
    assert mix["grokking"] >= 0.25
    assert mix["memorization"] >= 0.15
    assert mix["comprehension"] > 0
    assert mix["confusion"] > 0


def test_evaluation_only_families_are_never_in_the_training_split(corpus):
    evaluation = [r for r in corpus if r.split == "eval" and r.status == "ok"]
    n = len(evaluation)
    assert n >= 150
    assert {r.family for r in evaluation} == {"transformer", "digits"}
    assert all(r.split == "eval" for r in corpus if r.family != "mlp")


def test_held_out_ops_and_moduli_never_sit_in_the_training_split(corpus):
    holdout = corpus.manifest["holdout"]
    for run in corpus:
        if run.family != "mlp":
            continue
        held = run.config["op"] in holdout["op"] or run.config["p"] in holdout["p"]
        assert (run.split == "heldout") == held, run.run_id


def test_every_run_is_labelled_and_its_id_is_its_file(corpus):
    for run in corpus:
        assert run.status == "ok", (run.run_id, run.meta.get("error"))
        assert run.outcome in OUTCOMES
        labels = run.labels
        assert labels["budget"] == run.config["steps"]
        if run.outcome in ("grokking", "comprehension"):  # may generalize before t_mem
            assert labels["t_grok"] <= labels["budget"]
        if run.outcome == "grokking":
            assert labels["t_mem"] < labels["t_grok"]
            assert labels["gap"] >= max(250, labels["t_mem"])
        if run.outcome == "memorization":
            assert labels["t_mem"] is not None
            assert labels["t_grok"] is None
    names = sorted(p.stem for p in (CORPUS / "runs").glob("*.npz"))
    assert names == sorted(r.run_id for r in corpus)


def test_the_corpus_fits_in_the_repository_budget():
    size = sum(os.path.getsize(p) for p in CORPUS.rglob("*") if p.is_file())
    assert size <= 50 * 2**20
