"""Transports carry an agent's records off the training thread.

Every transport is fed through :meth:`Transport.submit`, which only enqueues (never blocks,
never raises); a daemon thread drains the bounded queue in batches and calls ``deliver``. When
the queue is full the record is dropped and counted in ``stats.dropped``. ``close(timeout)``
waits at most ``timeout`` seconds.

Built-ins: :class:`StoreTransport` (the embedded SQLite default), :class:`MemoryTransport`
(keeps records in a list: the test double) and :class:`NullTransport` (drops everything).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from grokwatch.decision import Decision
from grokwatch.store import Store

log = logging.getLogger("grokwatch")

Kind = Literal["start", "points", "snapshot", "finish"]


@dataclasses.dataclass(frozen=True)
class Record:
    """One message from the agent: a run start, evaluation points, a snapshot or the end."""

    kind: Kind
    run_id: str
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    points: Sequence[tuple[int, Mapping[str, float]]] = ()
    step: int = 0
    arrays: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TransportStats:
    submitted: int = 0
    delivered: int = 0
    dropped: int = 0
    errors: int = 0
    last_error: str = ""
    busy_seconds: float = 0.0
    """CPU time of the delivery thread in ``deliver`` (the agent counts it as its own cost)."""


class Transport:
    """Base transport: bounded queue + one background delivery thread.

    Subclasses implement :meth:`deliver`, called on the background thread with a batch of
    records in submission order.
    """

    def __init__(self, *, max_queue: int = 10_000, batch: int = 256) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue=}")
        self.stats = TransportStats()
        self._queue: queue.Queue[Record | None] = queue.Queue(maxsize=max_queue)
        self._batch = batch
        self._thread: threading.Thread | None = None
        self._closed = False
        self._start_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._pending = 0

    def deliver(self, records: Sequence[Record]) -> None:
        raise NotImplementedError

    def remote_decision(self) -> Decision | None:
        """The newest decision a remote detector sent back, if this transport has one.

        Called on the training thread at each evaluation: must return at once.
        """
        return None

    def submit(self, record: Record) -> bool:
        """Enqueue without blocking; False (and counted) when dropped."""
        if self._closed:
            self.stats.dropped += 1
            return False
        self._ensure_thread()
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.stats.dropped += 1
            return False
        with self._count_lock:
            self._pending += 1
            self.stats.submitted += 1
        return True

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._loop, name=f"grokwatch-{type(self).__name__}", daemon=True
                    )
                    self._thread.start()

    def _loop(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            batch: list[Record] = []
            if item is None:
                stop = True
            else:
                batch.append(item)
            while len(batch) < self._batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            if batch:
                self._deliver_safely(batch)

    def _deliver_safely(self, batch: Sequence[Record]) -> None:
        started = time.thread_time()
        try:
            self.deliver(batch)
            delivered = len(batch)
        except Exception as exc:  # delivery problems are reported, never raised
            delivered = 0
            self.stats.errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("grokwatch transport %s failed: %s", type(self).__name__, exc)
        with self._count_lock:
            self.stats.delivered += delivered
            self._pending -= len(batch)
            self.stats.busy_seconds += time.thread_time() - started

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far was handled; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._pending > 0:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)
        return True

    def close(self, timeout: float = 10.0) -> bool:
        """Deliver what is queued and stop the thread, waiting at most ``timeout`` seconds.

        Idempotent. Returns False when the thread was still busy at the deadline (the queue
        left behind is counted as dropped).
        """
        if self._closed:
            return True
        self._closed = True
        if self._thread is None:
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self._queue.put(None, timeout=max(deadline - time.monotonic(), 0.001))
                break
            except queue.Full:
                continue
        self._thread.join(max(deadline - time.monotonic(), 0.0))
        if self._thread.is_alive():
            self.stats.dropped += self._queue.qsize()
            return False
        return True


class StoreTransport(Transport):
    """Writes records to a :class:`~grokwatch.store.Store` (SQLite by default).

    Give the ``store``, or an ``opener`` returning it: the store is then opened on the delivery
    thread at the first delivery (creating a database file never blocks the training thread;
    its time is ``open_seconds``, not counted in ``stats.busy_seconds``), and a failure to open
    it is reported like any delivery failure.
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        opener: Callable[[], Store] | None = None,
        **kwargs: Any,
    ) -> None:
        if (store is None) == (opener is None):
            raise ValueError("give a store or an opener, not both")
        super().__init__(**kwargs)
        self._store = store
        self._opener = opener
        self.open_seconds = 0.0

    @property
    def store(self) -> Store:
        """The store (opened now if it was given as an ``opener``)."""
        if self._store is None:
            assert self._opener is not None  # one of the two is set (checked in __init__)
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                self._store = self._opener()
            finally:
                self.open_seconds += time.perf_counter() - started
                self.stats.busy_seconds -= time.thread_time() - cpu
        return self._store

    def deliver(self, records: Sequence[Record]) -> None:
        for rec in records:
            if rec.kind == "start":
                self.store.create_run(rec.run_id, rec.meta)
            elif rec.kind == "points":
                self.store.add_points(rec.run_id, rec.points)
            elif rec.kind == "snapshot":
                self.store.add_snapshot(rec.run_id, rec.step, rec.arrays)
            else:
                self.store.update_summary(rec.run_id, rec.meta, finished=True)


class MemoryTransport(Transport):
    """Keeps every record in ``records`` (delivered on the background thread, like the rest)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.records: list[Record] = []

    def deliver(self, records: Sequence[Record]) -> None:
        self.records.extend(records)


class NullTransport(Transport):
    """Drops everything: the agent still measures and decides, nothing is kept."""

    def submit(self, record: Record) -> bool:
        return True

    def deliver(self, records: Sequence[Record]) -> None:
        return None
