"""The training loop: it groks, it is deterministic, and it drives an agent as documented."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torch import nn

from trainer.config import RunConfig
from trainer.model import MLP
from trainer.tasks import Dataset, make_dataset
from trainer.train import (
    EMB_LR_MULT,
    EvalRecord,
    GrokfastEMA,
    TrainResult,
    build_model,
    build_optimizer,
    evaluate,
    first_step,
    train,
)

# Small and fast: p = 17, 30 steps take ~20 ms. One thread: two would fight other processes.
SMALL = RunConfig(
    p=17, frac=0.6, lr=3e-3, d_emb=16, d_hidden=32, steps=30, eval_every=10, threads=1
)


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_tiny_run_memorizes_then_groks() -> None:
    # Measured: p = 23 at frac 0.5 does not grok within 6000 steps at this width (test acc
    # 0–0.4); at frac 0.7 it memorizes by step ~150 and groks at 2150–2950 for seeds 0–3.
    # Seed 0: t_mem 150, t_grok 2650, ~3 s on one core.
    config = RunConfig(
        p=23, frac=0.7, lr=3e-3, wd=1.0, d_emb=32, d_hidden=64, steps=3300, eval_every=50,
        seed=0, data_seed=0, threads=1,
    )  # fmt: skip
    result = train(config)
    assert result.t_mem is not None and result.t_mem <= 300
    at_mem = next(r for r in result.history if r.step == result.t_mem)
    assert at_mem.test_acc < 0.3  # memorized, not generalized
    assert result.t_grok is not None, result.history[-1]
    assert result.t_grok - result.t_mem >= 1000  # a real delay: grokking, not comprehension
    assert result.history[-1].test_acc >= 0.9


def test_same_config_same_weights_whatever_the_global_rng() -> None:
    torch.manual_seed(123)
    a = train(SMALL)
    torch.rand(1000)  # move the global stream: the run reseeds it from config.seed
    b = train(SMALL)
    assert same_weights(a.state_dict, b.state_dict)
    assert a.history == b.history
    c = train(dataclasses.replace(SMALL, seed=1))
    assert not same_weights(a.state_dict, c.state_dict)


def test_runs_trained_at_once_in_threads_keep_their_own_initial_weights(monkeypatch) -> None:
    """The global torch generator is the process's: a run in another thread that seeds it while
    this run initializes must not change this run's weights (the alerting test trains two runs
    at once in threads). The first run's model is built slowly, so that without the lock the
    second run's seeding and initialization would land in the middle of it."""
    import importlib
    import threading
    import time

    training = importlib.import_module("trainer.train")  # the module (trainer.train is train)

    alone = {seed: train(dataclasses.replace(SMALL, seed=seed)) for seed in (0, 1)}
    real = training.build_model
    started = threading.Event()

    def slow_build(config: RunConfig) -> MLP:
        if config.seed == 0:
            started.set()
            time.sleep(0.3)  # seeded, not yet initialized: the other thread runs meanwhile
        return real(config)

    monkeypatch.setattr(training, "build_model", slow_build)
    results: dict[int, TrainResult] = {}

    def run(seed: int) -> None:
        results[seed] = train(dataclasses.replace(SMALL, seed=seed))

    first = threading.Thread(target=run, args=(0,))
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=run, args=(1,))
    second.start()
    first.join(30)
    second.join(30)
    for seed in (0, 1):
        for name, value in alone[seed].state_dict.items():
            assert torch.equal(results[seed].state_dict[name], value), (seed, name)


def test_history_steps_and_callback() -> None:
    seen: list[EvalRecord] = []
    result = train(dataclasses.replace(SMALL, steps=25), callback=seen.append)
    assert [r.step for r in result.history] == [0, 10, 20, 25]
    assert seen == result.history
    assert result.steps == 25
    assert not result.stopped_by_agent
    assert result.wall_time > 0
    assert all(0 <= r.train_acc <= 1 and 0 <= r.test_acc <= 1 for r in result.history)
    assert result.history[-1].train_loss < result.history[0].train_loss


def test_result_holds_cpu_weights_that_rebuild_the_model() -> None:
    result = train(SMALL)
    model = build_model(SMALL)
    model.load_state_dict(result.state_dict)
    assert all(t.device.type == "cpu" for t in result.state_dict.values())


def test_first_step_and_result_thresholds() -> None:
    history = [
        EvalRecord(0, 3.0, 0.1, 0.0),
        EvalRecord(100, 0.1, 0.995, 0.1),
        EvalRecord(200, 0.1, 1.0, 0.95),
    ]
    assert first_step(history, "train_acc", 0.99) == 100
    assert first_step(history, "test_acc", 0.90) == 200
    assert first_step(history, "test_acc", 0.99) is None
    result = TrainResult(SMALL, {}, history, 1.0, 200, stopped_by_agent=False)
    assert (result.t_mem, result.t_grok) == (100, 200)


@pytest.mark.parametrize("mode", [True, False])
def test_evaluate_restores_training_flag(mode: bool) -> None:
    model = build_model(SMALL)
    model.train(mode)
    data = make_dataset(SMALL.p, SMALL.op, SMALL.frac, data_seed=0)
    chunked = evaluate(model, data, 5, chunk=7)
    whole = evaluate(model, data, 5)
    assert model.training is mode
    assert chunked.step == 5
    assert chunked.train_acc == pytest.approx(whole.train_acc)
    assert chunked.train_loss == pytest.approx(whole.train_loss, rel=1e-5)


def test_threads_option_is_restored() -> None:
    before = torch.get_num_threads()
    train(dataclasses.replace(SMALL, steps=2, threads=1))
    assert torch.get_num_threads() == before


def test_cuda_without_cuda_is_an_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        train(dataclasses.replace(SMALL, device="cuda"))


# -- the agent contract ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stop:
    should_stop: bool


class RecordingAgent:
    """Checks, at every call, what the loop promises an agent."""

    def __init__(self, model: MLP, data: Dataset, config: RunConfig, stop_at: int = 0) -> None:
        self.model, self.data, self.config = model, data, config
        self.initial = {k: v.clone() for k, v in model.state_dict().items()}
        self.steps: list[int] = []
        self.stop_at = stop_at
        self.closed = 0

    def step(self, step: int, *, loss: torch.Tensor) -> Stop:
        assert isinstance(loss, torch.Tensor) and loss.dim() == 0
        assert not loss.requires_grad
        # Gradients of this step are still there (zero_grad comes at the start of a step).
        assert all(p.grad is not None for p in self.model.parameters())
        if not self.steps:
            # Called after optimizer.step(): the weights have already moved.
            assert not same_weights(self.initial, self.model.state_dict())
        self.steps.append(step)
        return Stop(step == self.stop_at)

    def close(self) -> None:
        self.closed += 1


def test_agent_is_called_after_each_update_and_closed() -> None:
    agents: list[RecordingAgent] = []

    def factory(model: nn.Module, data: Dataset, config: RunConfig) -> RecordingAgent:
        assert isinstance(model, MLP) and config is SMALL
        assert data.train_x.shape[1] == 2
        agents.append(RecordingAgent(model, data, config))
        return agents[-1]

    result = train(SMALL, agent_factory=factory)
    (agent,) = agents
    assert agent.steps == list(range(1, SMALL.steps + 1))
    assert agent.closed == 1
    assert result.steps == SMALL.steps


def test_agent_can_stop_the_run() -> None:
    agents: list[RecordingAgent] = []

    def factory(model: nn.Module, data: Dataset, config: RunConfig) -> RecordingAgent:
        agents.append(RecordingAgent(model, data, config, stop_at=17))  # type: ignore[arg-type]
        return agents[-1]

    result = train(SMALL, agent_factory=factory)
    assert result.steps == 17
    assert result.stopped_by_agent
    assert [r.step for r in result.history] == [0, 10, 17]
    assert agents[0].closed == 1


def test_agent_is_closed_when_training_fails() -> None:
    class Failing(RecordingAgent):
        def step(self, step: int, *, loss: torch.Tensor) -> Stop:
            if step == 3:
                raise RuntimeError("boom")
            return super().step(step, loss=loss)

    agents: list[RecordingAgent] = []

    def factory(model: Any, data: Dataset, config: RunConfig) -> RecordingAgent:
        agents.append(Failing(model, data, config))
        return agents[-1]

    with pytest.raises(RuntimeError, match="boom"):
        train(SMALL, agent_factory=factory)
    assert agents[0].closed == 1


def test_a_watching_agent_does_not_change_the_run() -> None:
    class Watching(RecordingAgent):
        def step(self, step: int, *, loss: torch.Tensor) -> Stop:
            with torch.no_grad():  # a measurement: forward passes, no writes
                self.model.eval()
                self.model(self.data.test_x)
                self.model.train()
            return super().step(step, loss=loss)

    plain = train(SMALL)
    watched = train(SMALL, agent_factory=Watching)
    assert same_weights(plain.state_dict, watched.state_dict)
    assert plain.history == watched.history


def test_grokwatch_agent_does_not_change_the_run() -> None:
    agent_module = pytest.importorskip("grokwatch.agent")

    def factory(model: nn.Module, data: Dataset, config: RunConfig) -> Any:
        return agent_module.Agent(
            model,
            train=(data.train_x, data.train_y),
            test=(data.test_x, data.test_y),
            every=config.eval_every,
            config=config.to_dict(),
            transport=None,
            modulus=config.p,
        )

    plain = train(SMALL)
    watched = train(SMALL, agent_factory=factory)
    assert same_weights(plain.state_dict, watched.state_dict)


# -- optimizer variants ----------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["grokfast", "emb_lr10"])
def test_variants_change_the_trajectory(variant: str) -> None:
    plain = train(SMALL)
    other = train(dataclasses.replace(SMALL, optimizer=variant))
    assert not same_weights(plain.state_dict, other.state_dict)
    assert plain.history[0] == other.history[0]  # same init and data: only the updates differ
    assert [r.train_loss for r in plain.history[1:]] != [r.train_loss for r in other.history[1:]]


def test_emb_lr10_puts_the_embedding_in_its_own_group() -> None:
    config = dataclasses.replace(SMALL, optimizer="emb_lr10")
    model = build_model(config)
    groups = build_optimizer(model, config).param_groups
    assert [g["lr"] for g in groups] == [config.lr * EMB_LR_MULT, config.lr]
    assert groups[0]["params"] == [model.embed.weight]  # type: ignore[union-attr]
    assert len(groups[1]["params"]) == len(list(model.parameters())) - 1
    assert all(g["weight_decay"] == config.wd for g in groups)


def test_grokfast_filter_amplifies_the_slow_gradient() -> None:
    w = nn.Parameter(torch.zeros(3))
    f = GrokfastEMA([w], alpha=0.9, lamb=2.0)
    g1, g2 = torch.tensor([1.0, 0.0, -1.0]), torch.tensor([0.0, 1.0, 1.0])
    w.grad = g1.clone()
    f()
    torch.testing.assert_close(w.grad, g1 + 2.0 * g1)  # the EMA starts at the first gradient
    w.grad = g2.clone()
    f()
    ema = 0.9 * g1 + 0.1 * g2
    torch.testing.assert_close(w.grad, g2 + 2.0 * ema)
