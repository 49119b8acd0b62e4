"""Replaying a stored run gives back the agent's own decisions, and the report draws them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from _models import TinyMLP, addition_data

import grokwatch
from grokwatch.report import write_report
from grokwatch.rundata import load_run
from grokwatch.timeline import entry, replay_stored


def _train(store: grokwatch.MemoryStore) -> tuple[grokwatch.Agent, list[dict]]:
    torch.manual_seed(0)
    model = TinyMLP()
    train, test = addition_data()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1.0)
    live = []
    agent = grokwatch.Agent(
        model,
        train=train,
        test=test,
        every=20,
        budget=200,
        transport=grokwatch.StoreTransport(store),
        run_id="replayed",
        policy=grokwatch.RunPolicy(),  # the replay applies the registered policy too
    )
    with agent:
        for step in range(1, 201):
            loss = F.cross_entropy(model(train[0]), train[1])
            opt.zero_grad()
            loss.backward()
            opt.step()
            decision = agent.step(step, loss=loss.detach())
            if decision.step == step:
                live.append(entry(decision))
    return agent, live


def test_replay_of_the_stored_points_gives_the_agents_decisions(tmp_path):
    store = grokwatch.MemoryStore()
    agent, live = _train(store)
    run = store.get_run("replayed")
    timeline = replay_stored(run.meta, store.points("replayed"))
    assert [e["step"] for e in live] == [1, *range(20, 201, 20)]  # at once, then every 20
    assert timeline.entries == live
    assert timeline.summary == agent.detector.summary()
    assert timeline.change_points == list(agent.detector.change_points)
    assert timeline.alert_threshold is not None and 0 < timeline.alert_threshold < 1
    assert run.meta["policy"] == grokwatch.RunPolicy().to_json()

    png = write_report(load_run(store, "replayed"), tmp_path / "r.png", timeline=timeline)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
