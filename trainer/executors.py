"""Executors a sweep runs its units of work on, all `concurrent.futures`-style:

- a local process pool (the default): `spawn` start method (a forked CUDA context is unsafe),
  one torch thread per worker, the heap kept (`trainer.heap`), as many workers as the CPU
  quota allows (`trainer.cpus`). Processes, not threads: one step of these small models is a
  handful of small matmuls that one thread runs near its matmul peak, and two processes give
  ~1.9× one (RESEARCH.md §4);
- `RayExecutor`, for a Ray cluster (`ray.init(address=...)`) or a local Ray;
- `InlineExecutor`, in the calling process (debugging, tests);
- anything with `submit(fn, *args) -> Future`.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from collections.abc import Callable
from typing import Any

import torch

from trainer.cpus import cpu_quota
from trainer.heap import keep_heap


def _init_worker() -> None:
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    keep_heap()


def local_executor(workers: int | None = None) -> cf.ProcessPoolExecutor:
    """Process pool with the spawn start method, one torch thread per worker and the heap
    kept (:func:`keep_heap`)."""
    return cf.ProcessPoolExecutor(
        max_workers=workers or cpu_quota(),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
    )


class RayExecutor:
    """A `concurrent.futures`-style executor over Ray tasks (one CPU each).

    Connects to `address` (a cluster, "auto") or starts a local Ray with `num_cpus`; if Ray
    is already initialized it is used as is and left running at shutdown.
    """

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError("the ray backend needs `pip install grokwatch[ray]`") from exc
        self._ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is not None:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = num_cpus or cpu_quota()
            ray.init(**kwargs)
        self._remotes: dict[Callable[..., Any], Any] = {}

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        if fn not in self._remotes:
            self._remotes[fn] = self._ray.remote(num_cpus=1, max_retries=0)(fn)
        future: cf.Future[Any] = self._remotes[fn].remote(*args, **kwargs).future()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class InlineExecutor:
    """Runs each task in the calling process at submit time (debugging, tiny tests)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        future: cf.Future[Any] = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass
