"""One worker thread that runs the run table's operations in arrival order.

:meth:`Worker.call` is awaited on the event loop; the thread drains every job queued so far,
runs them one after the other and hands the results back to the loop in groups (one wake-up of
the loop per group rather than per request). Under load this costs far fewer GIL hand-offs and
futures than a ``ThreadPoolExecutor`` per request, while the event loop stays free to parse the
next requests whenever the worker is inside SQLite (which releases the GIL).

:meth:`Worker.call_many` goes further for one kind of job: the items of consecutive queued
calls with the same function are handed to that function together (the service stores every
point batch waiting in the queue with one transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

ManyFn = Callable[[Sequence[Any]], Sequence[Any]]
"""Takes items, returns one result per item: a value, or an ``Exception`` to raise there."""


@dataclasses.dataclass(frozen=True)
class _Item:
    fn: ManyFn
    item: Any
    future: asyncio.Future[Any]


class _Empty(enum.Enum):
    EMPTY = enum.auto()  # nothing queued


_Call = tuple[Callable[[], Any], asyncio.Future[Any]]
_Job = _Call | _Item
_Next = _Job | _Empty | None
"""A job, nothing queued, or ``None``: stop."""
_Done = tuple[asyncio.Future[Any], Any, BaseException | None]


class Worker:
    """A FIFO worker thread bound to one event loop (see the module docstring)."""

    def __init__(
        self, *, name: str = "grokwatch-worker", flush_after: float = 0.002, max_group: int = 256
    ) -> None:
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._flush_after = flush_after
        self._max_group = max_group
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def _future(self) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        if not self._started:
            self._loop = loop
            self._started = True
            self._thread.start()
        return loop.create_future()

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` on the worker thread; its result or exception comes back here."""
        future = self._future()
        self._queue.put((fn, future))
        result: T = await future
        return result

    async def call_many(self, fn: ManyFn, item: Any) -> Any:
        """Run ``fn([..., item, ...])`` on the worker thread, together with the items of the
        calls with the same ``fn`` queued right before or after this one (at most
        ``max_group``); this item's result comes back here (raised if it is an exception)."""
        future = self._future()
        self._queue.put(_Item(fn, item, future))
        return await future

    def _run(self) -> None:
        job: _Next = self._queue.get()
        while job is not None:
            done: list[_Done] = []
            started = time.perf_counter()
            while job is not None and job is not _Empty.EMPTY:
                if isinstance(job, _Item):
                    job = self._run_group(job, done)
                else:
                    job = self._run_one(job, done)
                if time.perf_counter() - started > self._flush_after:
                    self._hand_back(done)
                    done, started = [], time.perf_counter()
            if done:
                self._hand_back(done)
            if job is _Empty.EMPTY:
                job = self._queue.get()

    def _next(self) -> _Next:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return _Empty.EMPTY

    def _run_one(self, job: _Call, done: list[_Done]) -> _Next:
        fn, future = job
        try:
            done.append((future, fn(), None))
        except BaseException as exc:  # handed to the awaiting request
            done.append((future, None, exc))
        return self._next()

    def _run_group(self, first: _Item, done: list[_Done]) -> _Next:
        """Run ``first`` with the same-function items queued behind it; the next other job."""
        group = [first]
        job = self._next()
        while isinstance(job, _Item) and job.fn is first.fn and len(group) < self._max_group:
            group.append(job)
            job = self._next()
        try:
            results = first.fn([g.item for g in group])
        except BaseException as exc:
            done.extend((g.future, None, exc) for g in group)
            return job
        for g, result in zip(group, results, strict=True):
            if isinstance(result, Exception):
                done.append((g.future, None, result))
            else:
                done.append((g.future, result, None))
        return job

    def _hand_back(self, done: list[_Done]) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(_resolve, done)

    def close(self, timeout: float = 30.0) -> None:
        """Finish the queued jobs and stop the thread."""
        if self._started:
            self._queue.put(None)
            self._thread.join(timeout)


def _resolve(done: list[_Done]) -> None:
    for future, result, exc in done:
        if future.cancelled():
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
