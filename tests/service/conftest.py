"""Fixtures for the detector service: injected settings/store/registry, in-thread and
subprocess servers on loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _serve import READY_TIMEOUT, wait_ready
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from grokwatch.service import ServiceSettings, create_app
from grokwatch.store import MemoryStore


@pytest.fixture(autouse=True)
def _no_grokwatch_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings come from the tests, never from the developer's environment."""
    for key in list(os.environ):
        if key.startswith("GROKWATCH_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("GROKWATCH_HOME", str(tmp_path / "home"))


def make_settings(tmp_path: Path, **kw: Any) -> ServiceSettings:
    return ServiceSettings(db_path=tmp_path / "service.db", **kw)


@pytest.fixture
def settings(tmp_path: Path) -> ServiceSettings:
    return make_settings(tmp_path)


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    s = MemoryStore()
    yield s
    s.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=False)


@pytest.fixture
def client(
    settings: ServiceSettings, store: MemoryStore, registry: CollectorRegistry
) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store=store, registry=registry)) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ThreadServer:
    """uvicorn serving an app on a loopback port from a background thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        import uvicorn

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ThreadServer:
        self.thread.start()
        wait_ready(self.url, timeout=60)  # in this process: no imports to wait for
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@contextlib.contextmanager
def thread_server(app: Any, port: int | None = None) -> Iterator[ThreadServer]:
    server = ThreadServer(app, port).start()
    try:
        yield server
    finally:
        server.stop()


class ServeProcess:
    """``grokwatch serve`` in a subprocess; its stderr goes to ``self.log`` (beside ``db``)."""

    def __init__(self, db: Path, port: int | None = None, *args: str, env: Any = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = db.with_name(f"{db.stem}.serve-{self.port}.stderr")
        cmd = [sys.executable, "-m", "grokwatch.cli", "serve", "--port", str(self.port)]
        cmd += ["--db", str(db), "--log-level", "warning", *args]
        with self.log.open("wb") as stderr:
            self.proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stderr=stderr)

    def wait(self, timeout: float = READY_TIMEOUT) -> ServeProcess:
        """Return once ``/readyz`` answers 200; otherwise stop the server and fail with its
        stderr."""
        try:
            wait_ready(self.url, self.proc, timeout=timeout, log=self.log)
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode
