"""A real ``grokwatch serve`` process on loopback: end to end, kill -9 under load, replicas."""

from __future__ import annotations

import collections
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from _serve import wait_ready
from conftest import ServeProcess, free_port

from grokwatch.http_transport import HTTPTransport, pick_replica
from grokwatch.transport import Record


def batch(run: str, start: int, n: int) -> dict[str, object]:
    return {
        "points": [
            {"step": s, "values": {"train_accuracy": 0.5, "test_accuracy": 0.1, "x": "nan"}}
            for s in range(start, start + n)
        ]
    }


def test_serve_end_to_end_and_graceful_stop(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path / "svc.db", None, "--token", "tok").wait()
    try:
        auth = {"authorization": "Bearer tok"}
        with httpx.Client(base_url=server.url, headers=auth, timeout=10) as c:
            assert c.post("/v1/runs", json={"run_id": "e2e", "budget": 100}).status_code == 201
            r = c.post("/v1/runs/e2e/points", json=batch("e2e", 0, 10))
            assert r.json()["accepted"] == 10
            assert c.get("/v1/runs/e2e").json()["n_points"] == 10
            assert 'grokwatch_run_step{run_id="e2e"} 9.0' in c.get("/metrics").text
            assert c.get("/openapi.json").json()["info"]["title"].startswith("grokwatch")
            assert httpx.post(f"{server.url}/v1/runs", json={"run_id": "x"}).status_code == 401
    finally:
        code = server.stop()
    assert code in (0, -15)  # uvicorn re-raises SIGTERM after its graceful shutdown
    with sqlite3.connect(tmp_path / "svc.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT COUNT(*) FROM points").fetchone() == (10,)


def test_serve_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "grokwatch.cli", "serve", "--host", "0.0.0.0"]
    cmd += ["--db", str(tmp_path / "x.db")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "requires a bearer token" in done.stderr
    assert not (tmp_path / "x.db").exists()


def test_kill_9_under_load_loses_no_acknowledged_point(tmp_path: Path) -> None:
    db = tmp_path / "svc.db"
    server = ServeProcess(db, None, "--forecaster", "none").wait()
    runs = [f"load-{i}" for i in range(8)]
    with httpx.Client(base_url=server.url, timeout=5) as c:
        for run in runs:
            c.post("/v1/runs", json={"run_id": run})
    acked: dict[str, set[int]] = collections.defaultdict(set)
    stop = threading.Event()

    def agent(run: str) -> None:
        step = 0
        with httpx.Client(base_url=server.url, timeout=5) as c:
            while not stop.is_set():
                try:
                    r = c.post(f"/v1/runs/{run}/points", json=batch(run, step, 20))
                except httpx.HTTPError:
                    return  # the server is gone: nothing after this was acknowledged
                if r.status_code == 200:
                    acked[run].update(range(step, step + 20))
                step += 20

    threads = [threading.Thread(target=agent, args=(run,)) for run in runs]
    for t in threads:
        t.start()
    time.sleep(1.5)
    server.kill()  # SIGKILL in the middle of the load
    stop.set()
    for t in threads:
        t.join(10)
    total = sum(len(s) for s in acked.values())
    assert total > 500, "the load did not run"

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    restarted = ServeProcess(db, None, "--forecaster", "none").wait()
    try:
        with httpx.Client(base_url=restarted.url, timeout=10) as c:
            assert c.get("/readyz").json()["live_runs"] == len(runs)  # every run is back
            for run in runs:
                state = c.get(f"/v1/runs/{run}").json()
                assert state["n_points"] >= len(acked[run])
                assert state["live"] is True
                assert state["last_step"] is not None
        with sqlite3.connect(db) as conn:
            for run in runs:
                rows = conn.execute("SELECT step FROM points WHERE run_id=?", (run,))
                stored = {step for (step,) in rows}
                assert acked[run] <= stored, f"{len(acked[run] - stored)} acknowledged points lost"
    finally:
        assert restarted.stop() in (0, -15)


def test_two_replicas_shard_runs_by_run_id(tmp_path: Path) -> None:
    a = ServeProcess(tmp_path / "a.db", None, "--forecaster", "none")
    b = ServeProcess(tmp_path / "b.db", None, "--forecaster", "none")
    try:
        a.wait()
        b.wait()
        urls = [a.url, b.url]
        transport = HTTPTransport(",".join(urls), spool=tmp_path / "spool.jsonl")
        runs = [f"sweep-{i}" for i in range(12)]
        for run in runs:
            transport.submit(Record("start", run, meta={"budget": 100}))
            transport.submit(Record("points", run, points=[(0, {"train_accuracy": 0.2})]))
        assert transport.close(20)
        assert transport.stats.dropped == 0
        for url in urls:
            mine = {run for run in runs if pick_replica(run, urls) == url}
            listed = httpx.get(f"{url}/v1/runs", timeout=10).json()["runs"]
            assert {r["run_id"] for r in listed} == mine
            exported = httpx.get(f"{url}/metrics", timeout=10).text
            for run in runs:
                assert (f'grokwatch_run_step{{run_id="{run}"}}' in exported) == (run in mine)
        assert 0 < len(mine) < len(runs)
    finally:
        a.stop()
        b.stop()


def test_a_server_that_exits_fails_the_wait_at_once_with_its_stderr(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path / "svc.db", None, "--no-such-option")
    with pytest.raises(RuntimeError, match=r"exited with 2[\s\S]*unrecognized arguments"):
        server.wait()  # RuntimeError, not the TimeoutError of the readiness bound


def test_a_server_never_ready_fails_the_wait_with_its_stderr(tmp_path: Path) -> None:
    log = tmp_path / "stderr"
    script = "import os, time; os.write(2, b'still importing'); time.sleep(60)"
    with log.open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", script], stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        while b"still importing" not in log.read_bytes():  # the line is in before the wait
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        with pytest.raises(TimeoutError, match=r"within 0.3 s \(last: Connect[\s\S]*importing"):
            wait_ready(url, proc, timeout=0.3, log=log)
    finally:
        proc.kill()
        proc.wait()
