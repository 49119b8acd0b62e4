from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from grokwatch import Agent, Forecast, Phase
from grokwatch.exceptions import ConfigError
from grokwatch.metrics import RunCollector, RunView, agent_view, serve_agent_metrics


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_collector_exposes_run_gauges_with_help_and_bounded_labels():
    view = RunView(
        run_id="r1",
        step=300,
        values={
            "train_accuracy": 1.0,
            "test_accuracy": 0.2,
            "weight_norm": 12.5,
            "weight_norm/out.weight": 3.0,
        },
        phase=Phase.PLATEAU,
        events={"t_mem": 100, "t_grok": None},
        last_report=1_700_000_000.0,
        forecast=Forecast(
            step=300, p_grok_horizon=0.4, horizon=1000, p_grok_budget=0.8, t_grok=2500.0
        ),
        agent_errors=2,
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(lambda: [view]))
    text = generate_latest(registry).decode()
    fams = families(text)
    for fam in fams.values():
        assert fam.documentation, fam.name
        assert fam.name.startswith("grokwatch_")
    assert fams["grokwatch_run_test_accuracy_ratio"].samples[0].value == 0.2
    measures = {s.labels["measure"]: s.value for s in fams["grokwatch_run_measure"].samples}
    assert measures == {"weight_norm": 12.5}  # per-layer values stay out (bounded labels)
    phases = {s.labels["phase"]: s.value for s in fams["grokwatch_run_phase"].samples}
    assert phases["plateau"] == 1.0
    assert sum(phases.values()) == 1.0
    assert len(phases) == len(Phase)
    events = {s.labels["event"]: s.value for s in fams["grokwatch_run_event_step"].samples}
    assert events == {"t_mem": 100.0}
    assert fams["grokwatch_run_grok_probability_ratio"].samples[0].value == 0.8
    assert fams["grokwatch_run_predicted_grok_step"].samples[0].value == 2500.0
    assert fams["grokwatch_run_agent_errors"].samples[0].name == "grokwatch_run_agent_errors_total"
    assert fams["grokwatch_run_last_report_timestamp_seconds"].samples[0].value == 1.7e9


def test_no_runs_no_series():
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(list))
    fams = families(generate_latest(registry).decode())
    skipped = fams.pop("grokwatch_exposition_skipped_values")  # the collector's own counter
    assert [s.value for s in skipped.samples] == [0.0]
    assert all(not f.samples for f in fams.values())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_agent_metrics_served_on_loopback(model, data):
    tr, te = data
    agent = Agent(model, train=tr, test=te, every=1, transport=None, probes=["loss_accuracy"])
    agent.step(0, loss=2.0)
    port = free_port()
    stop = serve_agent_metrics(lambda: [agent], port=port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    finally:
        stop()
        agent.close()
    fams = families(text)
    (sample,) = fams["grokwatch_run_step"].samples
    assert sample.labels == {"run_id": agent.run_id}
    assert sample.value == 0
    assert "grokwatch_run_train_accuracy_ratio" in fams


def test_agent_labels_and_finish_reach_the_exporter(model, data):
    tr, te = data
    agent = Agent(
        model,
        train=tr,
        test=te,
        every=1,
        transport=None,
        probes=["loss_accuracy"],
        labels={"experiment": "wd-sweep", "team": "ml", "user": "x"},
    )
    agent.step(0, loss=2.0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(lambda: [agent_view(agent)]))
    fams = families(generate_latest(registry).decode())
    (info,) = fams["grokwatch_run_info"].samples
    assert info.labels == {"run_id": agent.run_id, "experiment": "wd-sweep", "team": "ml"}
    assert not fams["grokwatch_run_finished_timestamp_seconds"].samples
    agent.close()
    fams = families(generate_latest(registry).decode())
    (done,) = fams["grokwatch_run_finished_timestamp_seconds"].samples
    assert done.value == agent.finished_at


def test_agent_labels_must_be_strings(model, data):
    with pytest.raises(ConfigError, match="labels"):
        Agent(model, transport=None, labels={"team": 1})
