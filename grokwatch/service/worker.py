"""One worker thread that runs the run table's operations in arrival order.

:meth:`Worker.call` is awaited on the event loop; the thread drains every job queued so far,
runs them one after the other and hands the results back to the loop in groups (one wake-up of
the loop per group rather than per request). Under load this costs far fewer GIL hand-offs and
futures than a ``ThreadPoolExecutor`` per request, while the event loop stays free to parse the
next requests whenever the worker is inside SQLite (which releases the GIL).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[Callable[[], Any], asyncio.Future[Any]]
_Done = tuple[asyncio.Future[Any], Any, BaseException | None]


class Worker:
    """A FIFO worker thread bound to one event loop (see the module docstring)."""

    def __init__(self, *, name: str = "grokwatch-worker", flush_after: float = 0.002) -> None:
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._flush_after = flush_after
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` on the worker thread; its result or exception comes back here."""
        loop = asyncio.get_running_loop()
        if not self._started:
            self._loop = loop
            self._started = True
            self._thread.start()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, future))
        return await future

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            done: list[_Done] = []
            started = time.perf_counter()
            while job is not None:
                fn, future = job
                try:
                    done.append((future, fn(), None))
                except BaseException as exc:  # handed to the awaiting request
                    done.append((future, None, exc))
                if time.perf_counter() - started > self._flush_after:
                    self._hand_back(done)
                    done, started = [], time.perf_counter()
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
            if done:
                self._hand_back(done)
            if job is None:
                return

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
