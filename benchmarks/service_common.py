"""Shared pieces of the service benchmarks: a ``grokwatch serve`` subprocess, a minimal
keep-alive HTTP/1.1 client on raw asyncio streams (so the load generator costs as little CPU as
possible on a 2-core machine), payloads and percentiles.

The server and the load generator are separate processes, one core each.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

MEASURES = (
    "train_accuracy",
    "test_accuracy",
    "train_loss",
    "test_loss",
    "weight_norm",
    "activation_sparsity",
    "weight_entropy",
    "circuit_complexity",
    "mc_dropout_variance",
    "fourier_gini",
    "spectral_entropy",
    "softmax_collapse",
)
"""Twelve values per point: the four performance measures and eight progress probes."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """``grokwatch serve`` on a free loopback port with a fresh database."""

    def __init__(self, db: Path, *args: str, forecaster: str = "default") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "grokwatch.cli", "serve", "--port", str(self.port)]
        cmd += ["--db", str(db), "--log-level", "warning", "--max-live-runs", "1000000"]
        cmd += ["--forecaster", forecaster, *args]
        self.proc = subprocess.Popen(cmd)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise TimeoutError("grokwatch serve did not start")

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def register(url: str, run_ids: Sequence[str]) -> None:
    with httpx.Client(base_url=url, timeout=30) as c:
        for run in run_ids:
            r = c.post("/v1/runs", json={"run_id": run, "task": "bench", "budget": 100_000})
            r.raise_for_status()


def points_body(start: int, n: int, rng: random.Random) -> bytes:
    pts = [
        {"step": start + i, "values": {m: round(rng.random(), 6) for m in MEASURES}}
        for i in range(n)
    ]
    return json.dumps({"points": pts}, separators=(",", ":")).encode()


class Connection:
    """One kept-alive HTTP/1.1 connection; ``post`` returns (status, seconds)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        assert self.reader is not None
        assert self.writer is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        length = 0
        for line in raw.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        content = await self.reader.readexactly(length) if length else b""
        return status, content

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary_ms(latencies: Sequence[float]) -> dict[str, Any]:
    return {
        "p50_ms": round(percentile(latencies, 50) * 1e3, 2),
        "p90_ms": round(percentile(latencies, 90) * 1e3, 2),
        "p99_ms": round(percentile(latencies, 99) * 1e3, 2),
        "max_ms": round(max(latencies) * 1e3, 2) if latencies else None,
    }


def use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def wait_for_forecasts(client: httpx.Client, timeout: float = 120.0) -> int:
    """Wait until the service has made every forecast it deferred (none waits); returns how
    many still wait when ``timeout`` ran out (0 normally)."""
    deadline = time.monotonic() + timeout
    while True:  # /readyz, not /metrics: rendering the exposition would grow the heap
        waiting = int(client.get("/readyz").json()["forecast_backlog"])
        if waiting == 0 or time.monotonic() > deadline:
            return waiting
        time.sleep(0.1)
