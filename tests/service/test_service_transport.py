"""HTTPTransport: batching, retries, spool and replay, bounded memory, close deadline, sharding."""

from __future__ import annotations

import collections
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port, make_settings, thread_server

from grokwatch.cli import main as cli_main
from grokwatch.decision import Reason
from grokwatch.exceptions import ConfigError
from grokwatch.http_transport import HTTPTransport, json_safe, parse_urls, pick_replica, sync
from grokwatch.service import create_app
from grokwatch.spool import Spool
from grokwatch.store import MemoryStore, SQLiteStore
from grokwatch.transport import Record


def start(run_id: str = "r1", **meta: Any) -> Record:
    return Record("start", run_id, meta={"model": "MLP", "budget": 1000, "config": {}, **meta})


def points(step: int, run_id: str = "r1", **values: float) -> Record:
    vals = {"train_accuracy": 0.5, "test_accuracy": 0.1, **values}
    return Record("points", run_id, points=[(step, vals)])


def finish(run_id: str = "r1") -> Record:
    return Record("finish", run_id, meta={"agent_errors": 0, "sharpness": math.nan})


class Recorder:
    """An httpx MockTransport handler that records requests and answers like the service."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.script: collections.deque[int | Exception] = collections.deque()
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
            nxt = self.script.popleft() if self.script else 200
        if isinstance(nxt, Exception):
            raise nxt
        if nxt != 200:
            return httpx.Response(nxt, json={"error": "x", "message": "scripted"})
        if request.url.path.endswith("/points"):
            body = json.loads(request.content)
            last = max(p["step"] for p in body["points"])
            decision = {
                "step": last,
                "action": "continue",
                "reason": "no_forecaster",
                "message": "remote",
                "phase": "plateau",
            }
            return httpx.Response(
                200,
                json={
                    "run_id": "r1",
                    "accepted": len(body["points"]),
                    "duplicates": 0,
                    "last_step": last,
                    "phase": "plateau",
                    "decision": decision,
                },
            )
        return httpx.Response(201, json={})

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]


def mock_transport(recorder: Recorder, tmp_path: Path, **kw: Any) -> HTTPTransport:
    client = httpx.Client(transport=httpx.MockTransport(recorder))
    kw.setdefault("backoff", 0.01)
    return HTTPTransport(
        "http://svc:1", client=client, spool=tmp_path / "spool.jsonl", seed=0, **kw
    )


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


# -- the happy path ------------------------------------------------------------------------


def test_records_become_batched_requests_and_decisions_come_back(
    recorder: Recorder, tmp_path: Path
) -> None:
    t = mock_transport(recorder, tmp_path)
    assert t.remote_decision() is None
    t.submit(start())
    for step in range(0, 500, 100):
        t.submit(points(step))
    t.submit(Record("snapshot", "r1", step=0))
    assert t.flush(5)
    decision = t.remote_decision()
    assert decision is not None and decision.message == "remote"
    t.submit(finish())
    assert t.close(5)
    assert recorder.paths()[0] == "/v1/runs"
    assert recorder.paths()[-1] == "/v1/runs/r1/finish"
    sent = [
        p["step"]
        for r in recorder.requests
        if r.url.path.endswith("/points")
        for p in json.loads(r.content)["points"]
    ]
    assert sent == [0, 100, 200, 300, 400]
    register = json.loads(recorder.requests[0].content)
    assert register["model"] == "MLP" and register["budget"] == 1000
    summary = json.loads(recorder.requests[-1].content)["summary"]
    assert summary["sharpness"] == "nan"  # the NaN policy on the agent side too
    assert t.skipped_snapshots == 1
    assert t.stats.dropped == 0
    assert not (tmp_path / "spool.jsonl").exists()


def test_against_the_real_service(tmp_path: Path) -> None:
    store = MemoryStore()
    app = create_app(make_settings(tmp_path), store=store)
    with thread_server(app) as server:
        t = HTTPTransport(server.url, spool=tmp_path / "s.jsonl")
        t.submit(start())
        for step in range(0, 1000, 100):
            t.submit(points(step, train_loss=math.inf))
        assert t.flush(10)
        assert t.remote_decision() is not None
        assert t.remote_decision().phase.value == "diverged"  # type: ignore[union-attr]
        t.submit(finish())
        assert t.close(10)
    assert [s for s, _ in store.points("r1")] == list(range(0, 1000, 100))
    assert store.points("r1")[0][1]["train_loss"] == math.inf
    assert store.get_run("r1").finished_at is not None


# -- failures ------------------------------------------------------------------------------


def test_retryable_failures_are_retried_with_backoff(recorder: Recorder, tmp_path: Path) -> None:
    recorder.script.extend([503, httpx.ConnectError("boom")])
    t = mock_transport(recorder, tmp_path, attempts=3)
    t.submit(start())
    assert t.close(5)
    assert len(recorder.requests) == 3
    assert t.retries == 2
    assert t.stats.delivered == 1
    assert t.spooled == 0


def test_refused_requests_are_dropped_and_counted_not_retried(
    recorder: Recorder, tmp_path: Path
) -> None:
    recorder.script.append(422)
    t = mock_transport(recorder, tmp_path)
    t.submit(start())
    t.submit(points(0))
    assert t.close(5)
    assert t.refused == 1
    assert t.stats.dropped == 1
    assert t.stats.delivered == 1
    assert len(recorder.requests) == 2


def test_unknown_run_is_registered_again(recorder: Recorder, tmp_path: Path) -> None:
    t = mock_transport(recorder, tmp_path)
    t.submit(start())
    assert t.flush(5)
    recorder.script.append(404)  # e.g. the service lost its database
    t.submit(points(0))
    assert t.close(5)
    assert recorder.paths() == ["/v1/runs", "/v1/runs/r1/points", "/v1/runs", "/v1/runs/r1/points"]
    assert t.stats.dropped == 0


def test_invalid_records_never_raise_and_are_counted(recorder: Recorder, tmp_path: Path) -> None:
    t = mock_transport(recorder, tmp_path)
    assert t.submit(start(run_id="bad id/with slash"))
    assert t.submit(Record("points", "r1", points=[(-5, {"x": 1.0})]))
    assert t.close(5)
    assert t.stats.dropped == 2
    assert recorder.requests == []


def test_unreachable_service_spools_then_replays_in_order_exactly_once(tmp_path: Path) -> None:
    """Service down at first, started later on the same port: every point arrives once."""
    port = free_port()
    store = SQLiteStore(tmp_path / "svc.db")
    t = HTTPTransport(
        f"http://127.0.0.1:{port}",
        spool=tmp_path / "spool.jsonl",
        backoff=0.05,
        max_backoff=0.2,
        timeout=2,
        seed=1,
    )
    t.submit(start())
    for step in range(0, 50):
        t.submit(points(step))
    assert t.flush(5)
    assert not t.online
    assert t.remote_decision() is None  # offline: the agent keeps its own decisions
    assert t.spooled == 51
    app = create_app(make_settings(tmp_path), store=store)
    with thread_server(app, port):
        for step in range(50, 100):
            t.submit(points(step))
            time.sleep(0.002)
        deadline = time.monotonic() + 10
        while (not t.online or t.spool.pending) and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.02)
        t.submit(finish())
        assert t.close(10)
        assert t.online
    steps = [s for s, _ in store.points("r1")]
    assert steps == list(range(100))
    assert store.get_run("r1").finished_at is not None
    assert t.stats.dropped == 0
    assert not (tmp_path / "spool.jsonl").exists()
    store.close()


def test_spooling_off_drops_and_counts(tmp_path: Path) -> None:
    t = HTTPTransport(f"http://127.0.0.1:{free_port()}", spool=False, backoff=0.01, timeout=1)
    t.submit(start())
    t.submit(points(0))
    assert t.close(5)
    assert t.stats.dropped == 2


# -- bounded memory and the close deadline ---------------------------------------------------


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A port that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def test_close_never_hangs_on_a_silent_service(black_hole: str, tmp_path: Path) -> None:
    t = HTTPTransport(black_hole, spool=tmp_path / "s.jsonl", timeout=2)
    t.submit(start())
    for step in range(5):
        t.submit(points(step))
    time.sleep(0.1)  # the delivery thread is now waiting for an answer that never comes
    for step in range(5, 10):
        t.submit(points(step))  # these wait in the queue
    began = time.monotonic()
    t.close(0.5)
    assert time.monotonic() - began < 0.7
    assert t._thread is not None
    t._thread.join(5)  # the stuck request times out; the thread then spools and cleans up
    assert not t._thread.is_alive()
    assert t.spooled == 11  # nothing lost: every record is in the spool
    assert t.spool is not None
    steps = [
        p["step"] for op, _ in t.spool.read() if op["op"] == "points" for p in op["body"]["points"]
    ]
    assert sorted(steps) == list(range(10))  # the queued ones first: replays are order-free


def test_submit_never_blocks_and_overflow_is_counted(black_hole: str, tmp_path: Path) -> None:
    t = HTTPTransport(black_hole, spool=tmp_path / "s.jsonl", timeout=30, max_queue=8)
    t.submit(start())
    time.sleep(0.05)  # the delivery thread is now stuck in a request
    began = time.perf_counter()
    accepted = sum(t.submit(points(step)) for step in range(2000))
    per_submit = (time.perf_counter() - began) / 2000
    assert per_submit < 2e-4
    assert accepted <= 9
    assert t.stats.dropped >= 2000 - 9
    t.close(0.5)


# -- sharding ------------------------------------------------------------------------------


def test_replica_choice_is_a_stable_hash_of_the_run_id() -> None:
    urls = parse_urls("http://a:1, http://b:2/")
    assert urls == ["http://a:1", "http://b:2"]
    assert pick_replica("run-7", urls) == pick_replica("run-7", list(urls))
    counts = collections.Counter(pick_replica(f"run-{i}", urls) for i in range(1000))
    assert 400 < counts["http://a:1"] < 600
    for bad in ("", "ftp://x", "nohost"):
        with pytest.raises(ConfigError):
            parse_urls(bad)


def test_each_run_goes_to_its_replica(recorder: Recorder, tmp_path: Path) -> None:
    client = httpx.Client(transport=httpx.MockTransport(recorder))
    urls = ["http://a:1", "http://b:1"]
    t = HTTPTransport(urls, client=client, spool=False)
    for i in range(20):
        t.submit(start(f"run-{i}"))
        t.submit(points(0, run_id=f"run-{i}"))
    assert t.close(5)
    for request in recorder.requests:
        run_id = (
            json.loads(request.content)["run_id"]
            if request.url.path == "/v1/runs"
            else request.url.path.split("/")[3]
        )
        assert f"http://{request.url.host}:1" == pick_replica(run_id, urls)
    assert {r.url.host for r in recorder.requests} == {"a", "b"}


# -- spool files and `grokwatch sync` --------------------------------------------------------


def test_grokwatch_sync_replays_a_left_over_spool(tmp_path: Path) -> None:
    spool = tmp_path / "left.jsonl"
    t = HTTPTransport(f"http://127.0.0.1:{free_port()}", spool=spool, backoff=0.01, timeout=1)
    t.submit(start())
    for step in range(5):
        t.submit(points(step))
    t.submit(finish())
    t.close(2)
    assert spool.exists()
    with open(spool, "ab") as f:
        f.write(b'{"op": "points", "run_id": "r1", "bo')  # a line cut short by a crash
    store = MemoryStore()
    with thread_server(create_app(make_settings(tmp_path), store=store)) as server:
        assert cli_main(["sync", str(tmp_path), "--detector", server.url]) == 0
        again = sync([spool], server.url)  # the file is gone: nothing left to replay
    assert again.files == 1 and again.sent == 0
    assert [s for s, _ in store.points("r1")] == [0, 1, 2, 3, 4]
    assert store.get_run("r1").finished_at is not None
    assert not spool.exists()


def test_sync_keeps_the_file_when_the_service_is_down(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.jsonl")
    spool.append([{"op": "register", "run_id": "r1", "body": {"run_id": "r1"}}])
    spool.close()
    result = sync([spool.path], f"http://127.0.0.1:{free_port()}", timeout=1)
    assert result.unsent == 1
    assert result.kept == [spool.path]
    assert spool.path.exists()


def test_spool_is_bounded(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.jsonl", max_bytes=200)
    op: Any = {"op": "points", "run_id": "r1", "body": {"points": [{"step": 1, "values": {}}]}}
    written = spool.append([op] * 10)
    assert 0 < written < 10
    assert spool.size <= 200
    assert [o for o, _ in spool.read()] == [op] * written
    spool.close()


def test_json_safe_encodes_what_an_agent_summary_holds() -> None:
    import numpy as np

    out = json_safe({"a": math.inf, "b": np.float32(0.5), "c": (1, np.int64(2)), "d": Path("/x")})
    assert out == {"a": "inf", "b": 0.5, "c": [1, 2], "d": "/x"}
    json.dumps(out, allow_nan=False)


def test_decision_reason_round_trips(recorder: Recorder, tmp_path: Path) -> None:
    t = mock_transport(recorder, tmp_path)
    t.submit(start())
    t.submit(points(7))
    assert t.close(5)
    d = t.remote_decision()
    assert d is not None and d.reason is Reason.NO_FORECASTER and d.step == 7


Factory = Callable[..., HTTPTransport]
