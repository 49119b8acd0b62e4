"""Waiting for a ``grokwatch serve`` subprocess to become ready, for every test that starts one."""

from __future__ import annotations

import ssl
import subprocess
import time
from pathlib import Path

import httpx

READY_TIMEOUT = 180.0
"""Seconds a server may take to answer ``/readyz`` with 200. Generous on purpose: on a busy
machine its imports alone can take tens of seconds. A ready server is seen at the next poll,
so a passing test never waits for this bound; a server that exits fails at once."""

POLL = 0.05
"""Seconds between two looks at the server."""


def stderr_tail(log: Path | None, lines: int = 40) -> str:
    """The last ``lines`` lines of the server's stderr, for a failure message."""
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").rstrip().splitlines()[-lines:]
    return "\n--- grokwatch serve stderr (last lines) ---\n" + "\n".join(text) if text else ""


def wait_ready(
    url: str,
    proc: subprocess.Popen[bytes] | None = None,
    *,
    timeout: float = READY_TIMEOUT,
    log: Path | None = None,
    verify: ssl.SSLContext | bool = True,
) -> None:
    """Poll ``url/readyz`` until it answers 200 (the run table is loaded).

    Raises ``RuntimeError`` as soon as ``proc`` exits and ``TimeoutError`` after ``timeout``
    seconds, each with the last answer seen and the tail of the server's stderr (``log``).
    """
    deadline = time.monotonic() + timeout
    last = "nothing yet"
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"grokwatch serve exited with {proc.returncode} before it was ready "
                f"(last: {last}){stderr_tail(log)}"
            )
        try:
            answer = httpx.get(f"{url}/readyz", timeout=1.0, verify=verify)
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if answer.status_code == 200:
                return
            last = f"/readyz answered {answer.status_code}"
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{url} not ready within {timeout:g} s (last: {last}){stderr_tail(log)}"
            )
        time.sleep(POLL)
