"""The committed corpus v2 (``trainer/data/corpus``) as shipped: what docs/corpus.md promises.

The sweep that writes it is long and was committed while still running (one file per run), so
these tests check what every committed state must already keep — the format, labels
consistent with the agent's definitions, every run one of the manifest's specs would draw,
the size budget, and the counts in ``trainer/data/corpus_summary.json`` (the docs' table)
equal to the runs on disk — and state the goals (≥ 2,500 runs, ≥ 250 per family, every
outcome in every family) as numbers a test can check the day they are met
(``test_goals_when_complete``), without pretending they are met earlier.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from trainer.corpus import OUTCOMES, load
from trainer.spec import SweepSpec

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "trainer" / "data" / "corpus"
SUMMARY = ROOT / "trainer" / "data" / "corpus_summary.json"
FAMILIES = {"mlp", "onehot", "transformer", "digits", "parity", "perm"}
GOAL_RUNS, GOAL_PER_FAMILY = 2500, 250
SIZE_BUDGET = 100 * 2**20

pytestmark = pytest.mark.skipif(
    not (CORPUS / "corpus.json").exists(), reason="corpus v2 not committed in this checkout"
)


@pytest.fixture(scope="module")
def corpus():
    return load(CORPUS, include_failed=True, version=2)


def test_every_run_is_format_v2_and_one_the_manifest_specs_draw(corpus):
    specs = {name: SweepSpec.from_dict(s) for name, s in corpus.manifest["specs"].items()}
    assert {s.family for s in specs.values()} == FAMILIES
    drawn = {t.run_id: t for s in specs.values() for t in s.tasks()}
    for run in corpus:
        assert run.meta["format_version"] == 2
        task = drawn.get(run.run_id)
        assert task is not None, f"{run.run_id} is not a run of the manifest's specs"
        assert dict(run.config) == task.config and run.family == task.family
    names = sorted(p.stem for p in (CORPUS / "runs").glob("*.npz"))
    assert names == sorted(r.run_id for r in corpus)


def test_every_run_is_labelled_by_the_definitions(corpus):
    for run in corpus:
        assert run.status == "ok", (run.run_id, run.meta.get("error"))
        assert run.outcome in OUTCOMES
        labels = run.labels
        assert labels["budget"] == run.config["steps"]
        assert 0 < run.meta["steps_run"] <= labels["budget"]
        assert run.steps[-1] == run.meta["steps_run"]
        if run.outcome in ("grokking", "comprehension"):
            assert labels["t_grok"] <= labels["budget"]
        if run.outcome == "grokking":
            assert labels["t_mem"] < labels["t_grok"]
            assert labels["gap"] >= max(250, labels["t_mem"])
        if run.outcome == "memorization":
            assert labels["t_mem"] is not None and labels["t_grok"] is None
        if run.outcome == "confusion":
            assert labels["t_mem"] is None
        test_acc = run.series("test_accuracy")
        if labels["t_grok"] is not None:  # the label is the first step at test acc >= 0.9
            first = int(run.steps[(test_acc >= 0.9).argmax()])
            assert first == labels["t_grok"]


def test_the_summary_the_docs_show_is_the_corpus_on_disk(corpus):
    summary = json.loads(SUMMARY.read_text())
    counts = corpus.counts()
    assert summary["runs"] == len(corpus)
    assert summary["version"] == 2
    for family, row in summary["families"].items():
        assert {o: counts[family][o] for o in row} == row


def test_the_corpus_fits_in_the_repository_budget():
    size = sum(os.path.getsize(p) for p in CORPUS.rglob("*") if p.is_file())
    assert size <= SIZE_BUDGET


def test_goals_of_the_issue(corpus):
    """The issue's goals: >= 2,500 runs, >= 250 per family, every outcome in every family, and
    the slow-grokker check on v2. Checked once the committed corpus has 2,500 runs (the plan
    draws 2710; docs/corpus.md says how far the sweep got); below that only the partial promise
    that every family is present once at least one stack of each had the time to finish."""
    per_family = Counter(r.family for r in corpus)
    if len(corpus) < GOAL_RUNS:
        if len(corpus) >= 6 * 16:  # the plan lets families take turns, 16 runs a stack
            assert set(per_family) == FAMILIES
        pytest.skip(f"{len(corpus)} runs committed, fewer than the goal of {GOAL_RUNS}")
    report = json.loads((CORPUS / "checks" / "memorization" / "report.json").read_text())
    assert report["checked"] >= 12 and report["factor"] >= 3
    for family in FAMILIES:
        assert per_family[family] >= GOAL_PER_FAMILY
        outcomes = Counter(r.outcome for r in corpus if r.family == family)
        assert all(outcomes[o] > 0 for o in OUTCOMES), (family, outcomes)
