from __future__ import annotations

import threading
import time

from grokwatch.transport import MemoryTransport, NullTransport, Record, Transport, TransportStats


class Blocking(Transport):
    """Delivery blocks until released: a stuck disk or network."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.release = threading.Event()
        self.got: list[Record] = []

    def deliver(self, records):
        self.release.wait(10)
        self.got.extend(records)


class Failing(Transport):
    def deliver(self, records):
        raise OSError("disk full")


def rec(i: int) -> Record:
    return Record("points", "r", points=[(i, {"x": float(i)})])


def test_memory_transport_delivers_in_order_and_flushes():
    t = MemoryTransport()
    for i in range(100):
        assert t.submit(rec(i))
    assert t.flush(5)
    assert [r.points[0][0] for r in t.records] == list(range(100))
    assert t.close(5)
    assert t.stats.delivered == 100


def test_full_queue_drops_and_counts_without_blocking():
    t = Blocking(max_queue=5, batch=1)
    started = time.perf_counter()
    accepted = [t.submit(rec(i)) for i in range(50)]
    assert time.perf_counter() - started < 0.5
    assert accepted.count(False) == t.stats.dropped
    assert t.stats.dropped >= 50 - 5 - 1  # queue of 5, one record in the stuck deliver
    t.release.set()
    assert t.close(5)
    assert len(t.got) == 50 - t.stats.dropped


def test_close_never_hangs_on_a_stuck_delivery():
    t = Blocking(max_queue=100)
    for i in range(10):
        t.submit(rec(i))
    time.sleep(0.05)
    started = time.perf_counter()
    assert t.close(timeout=0.2) is False
    assert time.perf_counter() - started < 1.0
    assert t.close() is True  # idempotent
    assert t.submit(rec(99)) is False  # closed: counted as dropped
    t.release.set()


def test_delivery_errors_are_counted_not_raised():
    t = Failing()
    t.submit(rec(0))
    assert t.flush(5)
    assert t.stats.errors == 1
    assert "disk full" in t.stats.last_error
    t.close(1)


def test_null_transport_keeps_nothing_and_never_queues():
    """More records than any queue holds: none is queued, dropped or delivered, no thread."""
    threads = threading.active_count()
    t = NullTransport(max_queue=10)
    for i in range(100):
        t.submit(rec(i))
    assert threading.active_count() == threads
    assert t.close(1)
    assert t.stats == TransportStats()
