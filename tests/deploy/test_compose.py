"""deploy/docker-compose.yml without a Docker engine: it parses, every mounted file exists,
the services reach each other on the ports they listen on, and nothing is published beyond
the host's loopback."""

from __future__ import annotations

import re
import subprocess
from urllib.parse import urlparse

import yaml
from _tools import DEPLOY, tool

COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_the_stack_has_its_five_services() -> None:
    assert set(SERVICES) == {"grokwatch", "prometheus", "alertmanager", "alert-receiver", "grafana"}


def test_every_mounted_file_exists() -> None:
    mounts = 0
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
                mounts += 1
            else:
                assert source in COMPOSE["volumes"], f"{name}: undeclared volume {source}"
    assert mounts >= 8


def test_published_ports_are_loopback_only_and_match_what_listens() -> None:
    listens = {
        "grokwatch": int(SERVICES["grokwatch"]["environment"]["GROKWATCH_PORT"]),
        "prometheus": 9090,
        "alertmanager": 9093,
        "grafana": 3000,
    }
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            host, published, inner = port.split(":")
            assert host == "127.0.0.1", f"{name} publishes {port} beyond loopback"
            assert int(inner) == listens[name] == int(published)
    for name, flag in (
        ("prometheus", "--web.listen-address=:9090"),
        ("alertmanager", "--web.listen-address=:9093"),
    ):
        assert flag in SERVICES[name]["command"]


def test_the_services_point_at_each_other() -> None:
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    scrape = prometheus["scrape_configs"][0]
    assert scrape["job_name"] == "grokwatch"  # the rules' detector alerts select this job
    assert scrape["static_configs"][0]["targets"] == ["grokwatch:8321"]
    alerting = prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alerting == ["alertmanager:9093"]
    mounted = dict(
        v.split(":")[:2][::-1] for v in SERVICES["prometheus"]["volumes"] if v.startswith(".")
    )
    for rule_file in prometheus["rule_files"]:
        assert mounted[rule_file] == "./prometheus/grokwatch-rules.yml"
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    receiver_port = SERVICES["alert-receiver"]["command"][-1]
    am = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    for receiver in am["receivers"]:
        for hook in receiver["webhook_configs"]:
            url = urlparse(hook["url"])
            assert (url.hostname, str(url.port)) == ("alert-receiver", receiver_port)


def test_the_service_in_compose_cannot_start_without_a_strong_token() -> None:
    env = SERVICES["grokwatch"]["environment"]
    assert env["GROKWATCH_HOST"] == "0.0.0.0"
    assert re.fullmatch(r"\$\{GROKWATCH_TOKEN:\?.+\}", env["GROKWATCH_TOKEN"])
    grafana = SERVICES["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")


def test_alertmanager_checks_its_configuration() -> None:
    out = subprocess.run(
        [tool("amtool"), "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    am = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    assert {"experiment", "run_id"} <= set(am["route"]["group_by"])


def test_promtool_checks_the_prometheus_configuration(tmp_path) -> None:
    # the rule file sits where the configuration names it inside the container
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["rule_files"] = [str(DEPLOY / "prometheus" / "grokwatch-rules.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    out = subprocess.run(
        [tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_checks_the_two_replica_configuration() -> None:
    out = subprocess.run(
        [tool("promtool"), "check", "config", str(DEPLOY / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 19 rules found" in out.stdout
