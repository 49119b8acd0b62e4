from __future__ import annotations

import math
import random
import weakref

import numpy as np
import pytest
import torch
from _images import assert_is_a_plot
from _models import TinyMLP, addition_data

import grokwatch
from grokwatch import (
    Agent,
    ConfigError,
    Layers,
    Limits,
    MemoryTransport,
    Phase,
    Probe,
    Reason,
    SQLiteStore,
)
from grokwatch.report import write_report
from grokwatch.rundata import load_run


def train(steps: int, *, attach: bool, every: int = 5, tmp_db=None, lr: float = 3e-3):
    """A seeded full-batch AdamW run; with ``attach`` the agent watches every ``every`` steps."""
    torch.manual_seed(0)
    (xtr, ytr), (xte, yte) = addition_data()
    model = TinyMLP()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1.0, betas=(0.9, 0.98))
    agent = None
    if attach:
        agent = Agent(
            model,
            train=(xtr, ytr),
            test=(xte, yte),
            every=every,
            transport=tmp_db,
            modulus=11,
            limits=Limits(snapshot_every=4 * every),
        )
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(xtr), ytr)
        loss.backward()
        opt.step()
        if agent is not None:
            agent.step(step, loss=loss)
    if agent is not None:
        agent.close()
    return model, opt, agent


def test_no_harm_bitwise_identical_parameters():
    """The same seeded run with and without the agent ends with bitwise-equal parameters."""
    plain, plain_opt, _ = train(60, attach=False)
    watched, watched_opt, agent = train(60, attach=True)
    assert agent is not None and agent.evaluations == 12
    assert agent.errors == 0
    for (name, a), b in zip(plain.state_dict().items(), watched.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for sa, sb in zip(plain_opt.state.values(), watched_opt.state.values(), strict=True):
        for key in sa:
            assert torch.equal(torch.as_tensor(sa[key]), torch.as_tensor(sb[key])), key
    # and it really measured something: every built-in probe ran
    assert set(agent.statuses) == set(grokwatch.PROBES)


def test_step_leaves_rng_mode_and_grads_untouched(model, data):
    train_data, test_data = data
    model.train()
    model.out.eval()  # a mixed pattern must survive
    x, y = train_data
    torch.nn.functional.cross_entropy(model(x), y).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    agent = Agent(
        model,
        train=train_data,
        test=test_data,
        transport=None,
        every=1,
        limits=Limits(snapshot_every=1),
    )
    states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    agent.step(0, loss=1.0)
    agent.close()
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.random.get_state()[1].tolist() == states[1][1].tolist()
    assert random.getstate() == states[2]
    assert model.training and not model.out.training and model.hidden.training
    for n, p in model.named_parameters():
        assert torch.equal(p, params[n]) and torch.equal(p.grad, grads[n]), n


def test_persisted_run_can_be_listed_and_replotted(tmp_path):
    db = tmp_path / "runs.db"
    _, _, agent = train(80, attach=True, every=10, tmp_db=db)
    store = SQLiteStore(db)
    (rec,) = store.list_runs()
    assert rec.run_id == agent.run_id and rec.finished_at is not None
    assert rec.n_points == 8
    assert rec.summary["evaluations"] == 8
    run = load_run(store, agent.run_id)
    assert run.series("train_accuracy")[0].tolist() == list(range(0, 80, 10))
    assert run.snapshots  # snapshots were stored
    out = write_report(run, tmp_path / "report.png")
    assert_is_a_plot(out)
    store.close()


def test_cadence_out_of_order_and_irregular_steps(model, data):
    tr, te = data
    sink = MemoryTransport()
    agent = Agent(model, train=tr, test=te, every=10, transport=sink, probes=["loss_accuracy"])
    for s in [0, 3, 7, 12, 12, 5, 19, 21, 35, 47]:
        agent.step(s)
    assert [s for s, _ in agent.history] == [0, 12, 21, 35, 47]
    assert agent.ignored_steps == 2
    agent.close()
    kinds = [r.kind for r in sink.records]
    assert kinds[0] == "start" and kinds[-1] == "finish" and kinds.count("points") == 5


def test_user_values_override_measured_ones(model, data):
    tr, _ = data
    agent = Agent(model, train=tr, every=1, transport=None, probes=["loss_accuracy"])
    agent.step(0, test_acc=0.5, train_acc=1.0)
    _, values = agent.history[-1]
    assert values["test_accuracy"] == 0.5 and values["train_accuracy"] == 1.0
    assert agent.events.t_mem == 0


def test_nan_loss_is_recorded_as_diverged_not_raised(model, data):
    tr, te = data
    agent = Agent(model, train=tr, test=te, every=1, transport=None, probes=["loss_accuracy"])
    decision = agent.step(0, loss=torch.tensor(float("nan")))
    assert decision.phase is Phase.DIVERGED
    assert math.isnan(agent.history[-1][1]["train_loss_step"])
    assert agent.errors == 0


class Exploding(Probe):
    name = "exploding"

    def compute(self, ctx):
        raise RuntimeError("boom")


class Infinite(Probe):
    name = "infinite"

    def compute(self, ctx):
        return {"infinite": float("inf")}


def test_broken_probes_never_reach_training(model, data):
    tr, te = data
    agent = Agent(
        model, train=tr, test=te, every=1, transport=None, probes=[Exploding(), Infinite()]
    )
    decision = agent.step(0)
    assert decision.action is grokwatch.Action.CONTINUE
    assert agent.statuses["exploding"].status == "error"
    assert "boom" in agent.statuses["exploding"].reason
    assert agent.statuses["infinite"].status == "non_finite"
    assert agent.history[-1][1]["infinite"] == math.inf


def test_internal_failure_becomes_agent_error_decision(model, data):
    tr, _ = data
    agent = Agent(model, train=tr, every=1, transport=None, probes=["loss_accuracy"])
    decision = agent.step("seven")  # type: ignore[arg-type]
    assert decision.reason is Reason.AGENT_ERROR and agent.errors == 1
    assert agent.step(1).reason is Reason.NO_FORECASTER


def test_close_is_idempotent_and_context_manager(model, data):
    tr, _ = data
    with Agent(model, train=tr, transport=None, probes=["weight_norm"]) as agent:
        agent.step(0)
    agent.close()
    agent.close()
    assert agent.step(100).step == 0  # closed: no more measuring


def test_pending_losses_are_bounded(model):
    agent = Agent(
        model, every=10**9, transport=None, probes=["weight_norm"], limits=Limits(loss_window=16)
    )
    agent.step(0)
    for s in range(1, 1000):
        agent.step(s, loss=torch.tensor(0.1))
    assert len(agent._pending_losses) == 16


def test_cpu_losses_are_read_at_once(model):
    """A CPU loss tensor is not kept between evaluations (it would fragment the heap the
    training step allocates from): its value is."""
    agent = Agent(model, every=10**9, transport=None, probes=["weight_norm"])
    agent.step(0)
    weight = torch.tensor(0.25, requires_grad=True)
    loss = weight * 2
    kept = weakref.ref(loss)
    agent.step(1, loss=loss)
    del loss
    assert kept() is None
    assert agent._pending_losses[-1] == (1, 0.5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"every": 0}, "every must be an int >= 1"),
        ({"every": 2.5}, "every must be"),
        ({"probes": ["no_such_probe"]}, "unknown probe name 'no_such_probe'"),
        (
            {"train": (torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.long))},
            r"train: the model cannot run on inputs \(4, 3\)",
        ),
        (
            {"train": (torch.zeros(4, 2, dtype=torch.long), torch.zeros(5, dtype=torch.long))},
            "no batch axis of length 5",
        ),
        (
            {"test": (torch.zeros(4, 2, dtype=torch.long), torch.zeros(4, 2))},
            "1-D tensor of class indices",
        ),
        (
            {"test": (torch.zeros(4, 2, dtype=torch.long), torch.full((4,), 99))},
            r"targets must lie in \[0, 11\)",
        ),
        ({"layers": Layers(hidden="nope")}, "hidden layer 'nope' is not a module"),
        ({"layers": Layers(embedding="hidden")}, "is not an nn.Embedding"),
        ({"budget": 0}, "budget"),
        ({"budget": 2.5}, "budget must be a whole number"),
        ({"every": True}, "every must be"),
        ({"overhead": 0.0}, "overhead must be a fraction"),
        ({"transport": 3}, "transport must be"),
    ],
)
def test_bad_configuration_is_a_clear_value_error(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Agent(model, **{"transport": None, **kwargs})


def test_insisted_probe_without_its_layer_is_refused():
    class NoEmbedding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.lin(x)

    with pytest.raises(ConfigError, match=r"embedding_structure.*needs embedding"):
        Agent(NoEmbedding(), transport=None, probes=["embedding_structure"])
    # not insisted: the probe is simply not applicable
    agent = Agent(NoEmbedding(), transport=None, every=1)
    agent.step(0)
    assert agent.statuses["embedding_structure"].status == "not_applicable"


def test_public_facade_lists_exactly_the_public_names():
    import types

    public = {
        n
        for n in dir(grokwatch)
        if not n.startswith("_") and not isinstance(getattr(grokwatch, n), types.ModuleType)
    }
    assert len(grokwatch.__all__) == len(set(grokwatch.__all__))
    assert set(grokwatch.__all__) - {"__version__"} == public
