"""Settings from GROKWATCH_* variables, the loopback rule, the agent's detector option, deploy
files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from grokwatch import Agent, HTTPTransport
from grokwatch.service.settings import ServiceSettings, is_loopback

ROOT = Path(__file__).resolve().parents[2]


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROKWATCH_PORT", "9999")
    monkeypatch.setenv("GROKWATCH_MAX_LIVE_RUNS", "7")
    monkeypatch.setenv("GROKWATCH_DB_PATH", "/tmp/x.db")
    monkeypatch.setenv("GROKWATCH_FINISHED_TTL", "12.5")
    s = ServiceSettings()
    assert (s.port, s.max_live_runs, str(s.db_path), s.finished_ttl) == (9999, 7, "/tmp/x.db", 12.5)
    assert ServiceSettings(port=1234).port == 1234  # explicit values (the CLI) win


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_no_token(host: str) -> None:
    assert is_loopback(host)
    assert ServiceSettings(host=host).token_value is None


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "example.org"])
def test_a_public_address_requires_a_token(host: str) -> None:
    with pytest.raises(ValidationError, match="requires a bearer token"):
        ServiceSettings(host=host)
    with pytest.raises(ValidationError, match="requires a bearer token"):
        ServiceSettings(host=host, token="")
    strong = "q7Vx-2mPz8Lr4Nw1"
    assert ServiceSettings(host=host, token=strong).token_value == strong


@pytest.mark.parametrize("token", ["t", " ", "change-me", "a" * 40, "abcabcabcabcabcab"[:15]])
def test_a_public_address_refuses_a_weak_token(token: str) -> None:
    with pytest.raises(ValidationError, match=r"strong token|requires a bearer token"):
        ServiceSettings(host="0.0.0.0", token=token)
    assert ServiceSettings(host="127.0.0.1", token=token).token is not None  # loopback: any


def test_protected_reads_need_a_token() -> None:
    with pytest.raises(ValidationError, match="protect_reads"):
        ServiceSettings(protect_reads=True)
    assert ServiceSettings(protect_reads=True, token="x").protect_reads


def test_tls_needs_both_files(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="both ssl_certfile and ssl_keyfile"):
        ServiceSettings(ssl_certfile=tmp_path / "cert.pem")
    with pytest.raises(ValidationError, match="both ssl_certfile and ssl_keyfile"):
        ServiceSettings(ssl_keyfile=tmp_path / "key.pem")


@pytest.mark.parametrize("labels", [["run_id"], ["__x"], ["1a"], ["a-b"], ["team", "team"]])
def test_info_labels_are_prometheus_label_names(labels: list[str]) -> None:
    with pytest.raises(ValidationError, match="info_labels"):
        ServiceSettings(info_labels=labels)


def test_the_token_is_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROKWATCH_TOKEN", "hunter2")
    s = ServiceSettings()
    assert s.token_value == "hunter2"
    assert "hunter2" not in repr(s)


@pytest.mark.parametrize(
    ("field", "value"),
    [("port", 70000), ("max_live_runs", 0), ("max_body_bytes", 10), ("idle_ttl", 0)],
)
def test_bad_settings_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        ServiceSettings(**{field: value})


def test_agent_takes_a_detector_url_or_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from torch import nn

    model = nn.Sequential(nn.Embedding(5, 4), nn.Flatten(), nn.Linear(8, 5))
    agent = Agent(model, probes=[], transport="http://127.0.0.1:1,http://127.0.0.1:2")
    assert isinstance(agent.transport, HTTPTransport)
    assert agent.transport.urls == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    agent.transport.close(0.5)
    monkeypatch.setenv("GROKWATCH_DETECTOR", "http://127.0.0.1:3")
    agent = Agent(model, probes=[])
    assert isinstance(agent.transport, HTTPTransport)
    assert agent.transport.urls == ["http://127.0.0.1:3"]
    agent.transport.close(0.5)


def test_prometheus_example_scrapes_two_replicas() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for sc in jobs["grokwatch"]["static_configs"] for t in sc["targets"]]
    assert len(targets) == 2
    assert jobs["grokwatch"]["metrics_path"] == "/metrics"


def test_the_example_environment_file_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every variable of deploy/grokwatch.env names a setting and parses."""
    fields = {f"GROKWATCH_{name.upper()}" for name in ServiceSettings.model_fields}
    for line in (ROOT / "deploy" / "grokwatch.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = line.split("=", 1)
            assert key in fields, key
            monkeypatch.setenv(key, value)
    settings = ServiceSettings()
    assert (settings.host, settings.token_value, settings.max_live_runs) == (
        "127.0.0.1",
        None,
        10_000,
    )
    assert settings.token is None  # nothing insecure ships: loopback, and no placeholder token
