"""The agent measures the loss the run minimizes, named or not (grokwatch.losses)."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from _models import TinyMLP, addition_data

from grokwatch import Agent, ModelIO
from grokwatch.losses import (
    CANDIDATES,
    LossSource,
    match_loss,
    match_means,
    mse_mean_one_hot,
    mse_one_hot,
)
from grokwatch.probes.base import cross_entropy_per_sample

LOSSES = {
    "cross_entropy": cross_entropy_per_sample,
    "mse": mse_one_hot,
    "mse_mean": mse_mean_one_hot,
}


def run(
    trained_with: str,
    *,
    named: bool,
    steps: int = 40,
    report: str = "loss",
    batch: int | None = None,
    init_scale: float = 1.0,
):
    """A seeded AdamW run minimizing ``trained_with``, watched every 10 steps; the loop
    reports its loss as ``loss=`` (mini-batch when ``batch``), ``train_loss=`` or not at all.
    Returns the agent and the final parameters."""
    torch.manual_seed(0)
    (xtr, ytr), (xte, yte) = addition_data()
    model = TinyMLP()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(init_scale)
    loss_fn = LOSSES[trained_with]
    io = ModelIO(loss_fn=loss_fn) if named else None
    agent = Agent(model, train=(xtr, ytr), test=(xte, yte), every=10, transport=None, io=io)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1.0)
    gen = torch.Generator().manual_seed(1)
    for step in range(steps):
        x, y = xtr, ytr
        if batch is not None:
            idx = torch.randperm(len(ytr), generator=gen)[:batch]
            x, y = xtr[idx], ytr[idx]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y).mean()
        loss.backward()
        opt.step()
        if report == "loss":
            agent.step(step, loss=loss)
        elif report == "train_loss" and step % 10 == 0:
            agent.step(step, train_loss=loss.item())
        else:
            agent.step(step)
    agent.close()
    return agent, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("trained_with", ["mse", "mse_mean", "cross_entropy"])
def test_the_loss_not_named_is_found_and_measured_as_if_named(trained_with):
    found, found_params = run(trained_with, named=False)
    named, named_params = run(trained_with, named=True)
    assert found.loss.source is LossSource.MATCHED and found.loss.name == trained_with
    assert named.loss.source is LossSource.NAMED
    assert found.errors == 0 and named.errors == 0
    # the same losses reach the forecaster, so the same forecasts
    for (s, a), (t, b) in zip(found.history, named.history, strict=True):
        assert s == t
        for key in ("train_loss", "test_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-6), (s, key)
    for a, b in zip(found_params, named_params, strict=True):
        assert torch.equal(a, b)  # and nothing changed the run
    summary = found.summary()
    assert summary["loss"] == trained_with and summary["loss_source"] == "matched"


def test_mse_found_from_mini_batch_losses_at_a_large_init():
    agent, _ = run("mse", named=False, batch=16, init_scale=8.0)
    assert agent.loss.name == "mse" and agent.loss.source is LossSource.MATCHED
    _, values = agent.history[-1]
    assert values["train_loss"] > 1.0  # an MSE of large outputs, not a cross-entropy


def test_train_loss_given_at_evaluations_is_compared_too():
    agent, _ = run("mse", named=False, report="train_loss")
    assert agent.loss.name == "mse" and agent.loss.source is LossSource.MATCHED


def test_a_loop_reporting_no_loss_keeps_cross_entropy_and_says_so(caplog):
    with caplog.at_level(logging.INFO, logger="grokwatch"):
        agent, _ = run("mse", named=False, report="none")
    assert agent.loss.name == "cross_entropy"
    assert agent.loss.source is LossSource.NOT_REPORTED
    assert "reported no training loss" in agent.summary()["loss_message"]
    assert any("reported no training loss" in r.getMessage() for r in caplog.records)
    assert agent.errors == 0


def test_without_train_data_cross_entropy_is_kept(model, data):
    _, test = data
    agent = Agent(model, test=test, every=1, transport=None, probes=["loss_accuracy"])
    agent.step(0, loss=0.5)
    agent.close()
    assert agent.loss.source is LossSource.NO_TRAIN_DATA and agent.loss.name == "cross_entropy"


def test_the_loss_at_the_next_step_settles_the_choice_and_corrects_the_first_point(model, data):
    """The loop reports the loss before its optimizer step: at the step after the first
    evaluation that is the loss of the weights it measured, so it decides; the first
    evaluation is corrected and the detector rebuilt on it."""
    tr, te = data
    agent = Agent(model, train=tr, test=te, every=1, transport=None, probes=["loss_accuracy"])
    with torch.no_grad():
        train_mse = float(mse_one_hot(model(tr[0]), tr[1]).mean())
        test_mse = float(mse_one_hot(model(te[0]), te[1]).mean())
        train_ce = float(cross_entropy_per_sample(model(tr[0]), tr[1]).mean())
    agent.step(0, loss=3.0 * train_mse)  # far above any candidate: cross-entropy for now
    assert agent.loss.source is LossSource.NO_MATCH  # cross-entropy for now
    assert agent.history[0][1]["train_loss"] == pytest.approx(train_ce, rel=1e-6)
    first = agent.detector
    agent.step(1, loss=torch.tensor(train_mse))  # no training in between: the same weights
    agent.step(2, loss=train_ce)  # settled: a later loss changes nothing
    agent.close()
    assert agent.loss.name == "mse" and agent.loss.source is LossSource.MATCHED
    assert agent.detector is not first  # rebuilt on the corrected first evaluation
    assert [s for s, _ in agent.history] == [0, 1, 2]
    for _, values in agent.history:
        assert values["train_loss"] == pytest.approx(train_mse, rel=1e-6)
        assert values["test_loss"] == pytest.approx(test_mse, rel=1e-6)
    assert agent.errors == 0


def test_a_close_match_is_settled_at_once(model, data):
    tr, te = data
    agent = Agent(model, train=tr, test=te, every=1, transport=None, probes=["loss_accuracy"])
    with torch.no_grad():
        train_mse = float(mse_one_hot(model(tr[0]), tr[1]).mean())
    agent.step(0, loss=1.02 * train_mse)
    assert agent.loss.name == "mse" and agent.loss.settled
    assert [s for s, _ in agent.history] == [0]
    detector = agent.detector
    with torch.no_grad():
        agent.step(1, loss=float(cross_entropy_per_sample(model(tr[0]), tr[1]).mean()))
    agent.close()
    assert agent.loss.name == "mse" and agent.detector is detector  # nothing to settle


def test_a_run_closed_right_after_its_first_evaluation_keeps_it(model, data):
    tr, te = data
    agent = Agent(model, train=tr, test=te, every=1, transport=None, probes=["loss_accuracy"])
    agent.step(0, loss=1.0)
    agent.close()
    assert [s for s, _ in agent.history] == [0]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, 0.0, 1e9])
def test_a_loss_that_matches_nothing_keeps_cross_entropy_without_raising(model, data, bad):
    tr, te = data
    agent = Agent(model, train=tr, test=te, every=1, transport=None, probes=["loss_accuracy"])
    agent.step(0, loss=bad)
    agent.close()
    assert agent.loss.source is LossSource.NO_MATCH and agent.loss.name == "cross_entropy"
    assert "ModelIO(loss_fn=...)" in agent.loss.message
    assert agent.errors == 0


def test_match_loss_needs_one_clear_candidate():
    torch.manual_seed(0)
    logits = 0.01 * torch.randn(64, 2)  # two classes near zero: CE 0.69, MSE 1.0, mean 0.5
    targets = torch.randint(0, 2, (64,))
    means = {k: float(fn(logits, targets).mean()) for k, fn in CANDIDATES.items()}
    exact = match_loss(means["cross_entropy"], logits, targets)
    assert exact.name == "cross_entropy" and exact.source is LossSource.MATCHED
    assert exact.candidates == pytest.approx(means)
    # two candidates a few % apart are not told apart, however close the reported loss
    near = {"cross_entropy": 0.70, "mse_mean": 0.72, "mse": 1.44}
    assert match_means(0.70, near).source is LossSource.NO_MATCH
    assert match_means(0.70, {**near, "mse_mean": 0.80}).name == "cross_entropy"
    between = math.sqrt(means["cross_entropy"] * means["mse_mean"])  # as close to both
    assert match_loss(between, logits, targets).source is LossSource.NO_MATCH
    # a reported loss up to twice the measured one matches (the loop reports it before the
    # optimizer's step), one below 0.8 times does not
    assert match_loss(1.9 * means["mse"], logits, targets).name == "mse"
    assert match_loss(2.1 * means["mse"], logits, targets).source is LossSource.NO_MATCH
    assert match_loss(0.75 * means["mse_mean"], logits, targets).source is LossSource.NO_MATCH
