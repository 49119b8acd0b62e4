"""``promtool check metrics`` on real scrapes: the service's ``/metrics`` (a subprocess of
``grokwatch serve`` with live, finished, non-finite and labelled runs) and the in-process
exporter's (``serve_agent_metrics`` over an agent); and the service over TLS."""

from __future__ import annotations

import contextlib
import datetime
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _serve import wait_ready
from _tools import ROOT, free_port, tool

from grokwatch import Agent
from grokwatch.metrics import serve_agent_metrics


def trusting(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


@contextlib.contextmanager
def serve(tmp: Path, env: dict[str, str] | None = None, scheme: str = "http") -> Iterator[str]:
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GROKWATCH_")}
    cmd = [sys.executable, "-m", "grokwatch.cli", "serve", "--port", str(port)]
    cmd += ["--db", str(tmp / "svc.db"), "--log-level", "warning"]
    log = tmp / "serve.stderr"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(cmd, env={**clean, **(env or {})}, cwd=ROOT, stderr=stderr)
    url = f"{scheme}://127.0.0.1:{port}"
    cafile = (env or {}).get("GROKWATCH_SSL_CERTFILE")
    verify: ssl.SSLContext | bool = True if cafile is None else trusting(Path(cafile))
    try:
        wait_ready(url, proc, log=log, verify=verify)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def check_metrics(text: str) -> None:
    out = subprocess.run(
        [tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_accepts_the_services_scrape(tmp_path: Path) -> None:
    tool("promtool")
    with serve(tmp_path) as url:
        labels = {"experiment": 'quote " and \\ back', "team": "ml"}
        assert (
            httpx.post(
                f"{url}/v1/runs", json={"run_id": "a", "budget": 3000, "labels": labels}
            ).status_code
            == 201
        )
        assert httpx.post(f"{url}/v1/runs", json={"run_id": "b"}).status_code == 201
        points = [
            {
                "step": s,
                "values": {
                    "train_accuracy": min(1.0, s / 500),
                    "test_accuracy": 0.05,
                    "train_loss": "nan" if s == 900 else 1.0 / (s + 1),
                    "test_loss": "inf" if s == 800 else 4.0,
                    "weight_norm": 30.0 - s / 100,
                    "weight_norm/embed.weight": 10.0,
                },
            }
            for s in range(0, 1000, 100)
        ]
        assert (
            httpx.post(f"{url}/v1/runs/a/points", json={"points": points, "dropped": 3}).status_code
            == 200
        )
        assert httpx.post(f"{url}/v1/runs/b/points", json={"points": points[:3]}).status_code == 200
        assert (
            httpx.post(f"{url}/v1/runs/b/finish", json={"summary": {"agent_errors": 2}}).status_code
            == 200
        )
        assert httpx.post(f"{url}/v1/runs", content=b"x").status_code == 415  # a rejected counter
        scrape = httpx.get(f"{url}/metrics")
        assert scrape.status_code == 200
    text = scrape.text
    for series in (
        'grokwatch_run_info{experiment="quote \\" and \\\\ back",run_id="a",team="ml"} 1.0',
        'grokwatch_run_dropped_records_total{run_id="a"} 3.0',
        'grokwatch_run_agent_errors_total{run_id="b"} 2.0',
        'grokwatch_run_finished_timestamp_seconds{run_id="b"}',
        "grokwatch_service_request_duration_seconds_bucket",
    ):
        assert series in text, series
    check_metrics(text)


def test_promtool_accepts_the_in_process_exporters_scrape(model, data) -> None:
    tool("promtool")
    train, test = data
    agent = Agent(
        model, train=train, test=test, every=1, transport=None, budget=100, labels={"team": "ml"}
    )
    for step in range(12):
        agent.step(step, loss=2.0 - step / 10)
    port = free_port()
    stop = serve_agent_metrics(lambda: [agent], port=port)
    try:
        scrape = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    finally:
        stop()
        agent.close()
    assert scrape.status_code == 200
    assert 'grokwatch_run_info{experiment="",run_id="' in scrape.text
    assert "grokwatch_run_test_accuracy_ratio" in scrape.text
    check_metrics(scrape.text)


def self_signed(tmp: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_the_service_serves_tls_with_its_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    env = {"GROKWATCH_SSL_CERTFILE": str(cert), "GROKWATCH_SSL_KEYFILE": str(key)}
    with serve(tmp_path, env, scheme="https") as url:
        r = httpx.post(f"{url}/v1/runs", json={"run_id": "tls"}, verify=trusting(cert))
        assert r.status_code == 201
        assert httpx.get(f"{url}/metrics", verify=trusting(cert)).status_code == 200
        with pytest.raises(httpx.HTTPError):  # plain HTTP is not served
            httpx.get(url.replace("https://", "http://") + "/healthz", timeout=3)
        with pytest.raises(httpx.ConnectError):  # and an unknown certificate is refused
            httpx.get(f"{url}/healthz", timeout=3)
