"""Finding the real Prometheus tools: in CI (``CI`` set) a missing binary fails the test, on a
developer machine without them the test is skipped (``.ci/run`` installs them with apt)."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def tool(name: str) -> str:
    """The path of ``name``; fails in CI, skips elsewhere, when it is not installed."""
    path = shutil.which(name)
    if path is None:
        why = f"{name} is not installed (apt-get install prometheus prometheus-alertmanager)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
