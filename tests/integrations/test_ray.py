"""The Ray Tune stopper in a real local Tuner run: the hopeless trial is stopped early, the
trial forecast to grok runs its budget and the extension."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from _task import (
    BUDGET,
    EVERY,
    EXTEND,
    EXTENDED,
    HOPELESS,
    LR,
    agent,
    data,
    mlp,
    one_thread,  # noqa: F401 (autouse fixture)
)

from grokwatch.integrations import LoopBudget

ray = pytest.importorskip("ray")
tune = pytest.importorskip("ray.tune")
from grokwatch.integrations.ray import GrokwatchStopper, report_fields  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning"
)


def trainable(config: dict[str, Any]) -> None:
    torch.set_num_threads(1)
    p = config["p"]
    model = mlp()
    watch = agent(model, p, HOPELESS if p < 0.5 else EXTEND)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    (x, y), _ = data()
    budget = LoopBudget(BUDGET)
    for step in budget:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        decision = watch.step(step, loss=loss)
        budget.follow(decision)
        if decision.step == step:
            tune.report({"step": step, **report_fields(decision, budget)})
    watch.close()


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory):
    here = Path(__file__).parent  # workers import this module and this checkout's grokwatch
    ray.init(
        runtime_env={"env_vars": {"PYTHONPATH": f"{here}{os.pathsep}{here.parent.parent}"}},
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=str(tmp_path_factory.mktemp("ray")),
    )
    yield
    ray.shutdown()


def test_the_stopper_ends_hopeless_trials_in_a_local_tuner(local_ray, tmp_path) -> None:
    stopper = GrokwatchStopper()
    tuner = tune.Tuner(
        trainable,
        param_space={"p": tune.grid_search([0.0, 0.9])},
        run_config=tune.RunConfig(stop=stopper, storage_path=str(tmp_path), verbose=0),
    )
    results = tuner.fit()
    last = {r.config["p"]: r.metrics for r in results}
    assert last[0.0]["grokwatch_action"] == "stop"
    assert last[0.0]["grokwatch_reason"] == "hopeless"
    assert last[0.0]["step"] < BUDGET // 2
    assert last[0.9]["grokwatch_budget"] == EXTENDED  # extended once, then ran it
    assert last[0.9]["step"] == EXTENDED - EVERY  # its last evaluation
    assert list(stopper.stopped.values()) == ["hopeless"]


def test_the_stopper_keeps_the_reported_budget() -> None:
    stopper = GrokwatchStopper()
    assert not stopper("t", {"step": 170, "grokwatch_budget": 180, "grokwatch_action": "extend"})
    assert stopper("t", {"step": 180, "grokwatch_budget": 180, "grokwatch_action": "continue"})
    assert stopper("u", {"training_iteration": 3, "grokwatch_action": "stop"})
    assert stopper.stopped == {"t": "budget", "u": "stop"}
    assert not stopper.stop_all()
