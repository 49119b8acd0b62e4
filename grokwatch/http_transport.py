"""The agent's transport to a remote detector service (``Agent(..., transport=URL)``).

:class:`HTTPTransport` keeps every promise of :class:`~grokwatch.transport.Transport`:
``submit`` only enqueues (never blocks, never raises); one background thread batches records
and sends them over a kept-alive ``httpx.Client``; failures are retried with exponential
backoff and full jitter; while the service is unreachable every record goes, in order, to a
local JSON-lines spool (:mod:`grokwatch.spool`) that is replayed when the service answers
again (or by hand with ``grokwatch sync``); memory is bounded by the queue, and what cannot be
queued or spooled is dropped and counted in ``stats.dropped`` (also reported to the service);
``close(timeout)`` returns within ``timeout`` -- whatever could not be sent by then is spooled.

Delivery is at-least-once and the service is idempotent on (run, step), so every point is
stored exactly once.

Mapping of records: ``start`` registers the run, consecutive ``points`` records of a run are
merged into batches of at most ``max_points`` points, ``finish`` finishes the run. Snapshot
records (arrays) are **not** sent -- the service keeps scalar histories -- and are counted in
:attr:`HTTPTransport.skipped_snapshots`.

Several replicas: ``url`` may be a list or a comma-separated string; each run is sent to
``pick_replica(run_id, urls)``, a stable hash of the run id, so one run's history lives on one
replica and every agent of a sweep agrees without coordination.

Decisions: each acknowledged points batch carries the service's :class:`Decision`;
:meth:`HTTPTransport.remote_decision` returns the newest one while the service is reachable
(``None`` while offline, so the agent falls back on its own detector).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import json
import logging
import os
import queue
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from grokwatch.decision import Decision
from grokwatch.exceptions import ConfigError
from grokwatch.spool import Op, Spool, default_spool_dir, spool_files
from grokwatch.transport import Record, Transport
from grokwatch.wire import (
    API_PREFIX,
    IngestResult,
    PointsBatch,
    RunCreate,
    RunFinish,
    wire_value,
    wire_values,
)

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("grokwatch")

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def _httpx() -> ModuleType:
    """httpx, imported on first use so ``import grokwatch`` does not need it."""
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "the HTTP transport needs httpx: pip install 'grokwatch[service]'"
        ) from exc
    return httpx


class Delivery(enum.Enum):
    """What became of one request: sent, worth retrying, or refused for good."""

    SENT = "sent"
    RETRY = "retry"
    REFUSED = "refused"


def parse_urls(url: str | Sequence[str]) -> list[str]:
    """Replica base URLs from a list or a comma-separated string (validated, no trailing /)."""
    items = url.split(",") if isinstance(url, str) else list(url)
    urls = [u.strip().rstrip("/") for u in items if u and u.strip()]
    if not urls:
        raise ConfigError(f"detector needs at least one http(s) URL, got {url!r}")
    for u in urls:
        parsed = _httpx().URL(u)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError(f"detector URL must be http(s)://host[:port], got {u!r}")
    return urls


def pick_replica(run_id: str, urls: Sequence[str]) -> str:
    """The replica that owns ``run_id``: SHA-256 of the id, first 8 bytes, modulo the count."""
    digest = hashlib.sha256(run_id.encode()).digest()
    return urls[int.from_bytes(digest[:8], "big") % len(urls)]


def json_safe(value: Any) -> Any:
    """Plain JSON of an agent summary or meta: non-finite floats become ``"nan"``/``"inf"``/
    ``"-inf"``, numpy scalars and arrays become Python values, anything else its ``str``."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float):
        return wire_value(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def register_body(run_id: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    """A :class:`RunCreate` body from an agent's ``start`` meta (validated here, strictly)."""
    meta = json_safe(meta)
    config = meta["config"] if isinstance(meta.get("config"), dict) else {}
    known = {"config", "budget", "model", "task", "labels"}
    body = {
        "run_id": run_id,
        "task": meta.get("task", config.get("task")),
        "model": meta.get("model"),
        "hyperparameters": config,
        "budget": meta.get("budget"),
        "labels": meta.get("labels") or {},
        "meta": {k: v for k, v in meta.items() if k not in known},
    }
    if not isinstance(body["task"], str):
        body["task"] = None
    return RunCreate.model_validate(body).model_dump(mode="json")


@dataclasses.dataclass
class Sender:
    """Sends wire operations to the replicas; shared by the transport and ``grokwatch sync``."""

    urls: list[str]
    client: httpx.Client
    token: str | None = None
    timeout: float = 5.0
    on_decision: Callable[[str, Decision], None] | None = None
    known_meta: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def send(self, op: Op, *, timeout: float | None = None) -> tuple[Delivery, str]:
        """One request; returns the delivery and, when not sent, why."""
        if op["op"] == "register":
            self.known_meta[op["run_id"]] = op["body"]
        delivery, why, status = self._post(op, timeout)
        if status == 404 and op["op"] != "register":
            # the service lost or never got the registration: register again, then retry
            body = self.known_meta.get(op["run_id"], {"run_id": op["run_id"]})
            again = Op(op="register", run_id=op["run_id"], body=body)
            reg, why, _ = self._post(again, timeout)
            if reg is not Delivery.SENT:
                return reg, why
            delivery, why, _ = self._post(op, timeout)
        return delivery, why

    def _post(self, op: Op, timeout: float | None) -> tuple[Delivery, str, int]:
        base = pick_replica(op["run_id"], self.urls)
        path = f"{API_PREFIX}/runs"
        if op["op"] != "register":
            path = f"{API_PREFIX}/runs/{op['run_id']}/{op['op']}"
        headers = {"content-type": "application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        try:
            response = self.client.post(
                base + path,
                content=json.dumps(op["body"], separators=(",", ":")),
                headers=headers,
                timeout=self.timeout if timeout is None else max(timeout, 0.05),
            )
        except _httpx().HTTPError as exc:
            return Delivery.RETRY, f"{type(exc).__name__}: {exc}", 0
        status = response.status_code
        if status in (200, 201):
            if op["op"] == "points" and self.on_decision is not None:
                self._read_decision(op["run_id"], response.content)
            return Delivery.SENT, "", status
        why = f"HTTP {status} from {base}{path}: {response.text[:300]}"
        if status in RETRYABLE_STATUS:
            return Delivery.RETRY, why, status
        return Delivery.REFUSED, why, status

    def _read_decision(self, run_id: str, content: bytes) -> None:
        try:
            result = IngestResult.model_validate_json(content)
        except ValidationError:
            return
        if result.decision is not None and self.on_decision is not None:
            self.on_decision(run_id, result.decision.to_decision())


class HTTPTransport(Transport):
    """Ships an agent's records to one detector service or a sharded set of replicas.

    Parameters (keyword-only but ``url``)
    ----------
    url:
        ``"http://host:port"``, a comma-separated list of replicas, or a list of URLs.
    token:
        Bearer token for the service's writes; default ``$GROKWATCH_TOKEN``.
    spool:
        Spool file path; default a fresh file under ``$GROKWATCH_HOME/spool``. ``False``
        disables spooling (records that cannot be sent are then dropped and counted).
    timeout:
        Seconds per HTTP request.
    attempts:
        Tries per request before the transport goes offline and spools (backoff between).
    backoff, max_backoff:
        First retry delay and its cap (seconds); the delay doubles per failure, with full
        jitter (uniform in [delay/2, delay]).
    max_queue, batch:
        Bound of the in-memory queue and records per delivery batch.
    max_points:
        Points per request.
    max_spool_bytes:
        Bound of the spool file.
    client:
        An ``httpx.Client`` to use (tests inject ``httpx.MockTransport``); closed by
        :meth:`close` only when the transport created it.
    seed:
        Seed of the private jitter RNG.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        token: str | None = None,
        spool: str | Path | bool | None = None,
        timeout: float = 5.0,
        attempts: int = 3,
        backoff: float = 0.1,
        max_backoff: float = 10.0,
        max_queue: int = 10_000,
        batch: int = 256,
        max_points: int = 500,
        max_spool_bytes: int = 1 << 30,
        client: httpx.Client | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(max_queue=max_queue, batch=batch)
        for name, value in (("timeout", timeout), ("backoff", backoff)):
            if not value > 0:
                raise ConfigError(f"{name} must be > 0, got {name}={value!r}")
        if attempts < 1 or max_points < 1:
            raise ConfigError(
                f"attempts and max_points must be >= 1, got {attempts=}, {max_points=}"
            )
        self.urls = parse_urls(url)
        if token is None:
            token = os.environ.get("GROKWATCH_TOKEN") or None
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max(max_backoff, backoff)
        self.max_points = max_points
        self._own_client = client is None
        http = _httpx()
        self._client = client or http.Client(
            timeout=timeout, limits=http.Limits(max_keepalive_connections=len(self.urls))
        )
        self.sender = Sender(
            self.urls, self._client, token=token, timeout=timeout, on_decision=self._decided
        )
        if spool is False:
            self.spool: Spool | None = None
        else:
            path = (
                Path(spool)
                if isinstance(spool, str | Path)
                else default_spool_dir()
                / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.jsonl"
            )
            self.spool = Spool(path, max_bytes=max_spool_bytes)
        self._rng = random.Random(seed)
        self._offline = False
        self._failures = 0
        self._next_try = 0.0
        self._deadline: float | None = None
        self._decision: Decision | None = None
        self.skipped_snapshots = 0
        self.spooled = 0
        """Records written to the spool."""
        self.replayed = 0
        """Spooled operations the service acknowledged on replay."""
        self.refused = 0
        """Records the service refused for good (4xx other than 404/408/425/429)."""
        self.retries = 0

    # -- the Transport contract -------------------------------------------------------------

    def remote_decision(self) -> Decision | None:
        """The newest decision the service sent back; ``None`` while it is unreachable."""
        return None if self._offline else self._decision

    @property
    def online(self) -> bool:
        return not self._offline

    def deliver(self, records: Sequence[Record]) -> None:
        """Send (or spool) a batch of records; used by the background loop, never raises."""
        self._handle(self._ops(records))

    def close(self, timeout: float = 10.0) -> bool:
        """Send what is queued, spool what cannot be sent by the deadline, stop the thread.

        Returns within ``timeout`` seconds (plus a few milliseconds). Records left in the
        spool are named in a warning with the ``grokwatch sync`` command that replays them.
        """
        if self._closed:
            return True
        self._closed = True
        now = time.monotonic()
        self._deadline = now + max(timeout, 0.0) * 0.8
        if self._thread is None:
            self._release()
            return True
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=max(timeout * 0.9, 0.001))
        self._thread.join(max(now + timeout - time.monotonic(), 0.0))
        if not self._thread.is_alive():
            return True
        # the delivery thread is stuck in a request: keep what is still queued, in the spool
        left: list[Record] = []
        with contextlib.suppress(queue.Empty):
            while True:
                item = self._queue.get_nowait()
                if item is not None:
                    left.append(item)
        self._safely(lambda: self._to_spool(self._ops(left)))
        with self._count_lock:
            self._pending -= len(left)
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        return False

    def _release(self) -> None:
        """Close the spool file and an owned client (on the delivery thread, as it ends)."""
        if self._own_client:
            self._client.close()
        if self.spool is not None:
            self.spool.close()
            if self.spool.pending:
                log.warning(
                    "grokwatch: the detector service was unreachable; %d bytes of records "
                    "are spooled in %s -- replay them with: grokwatch sync %s --detector %s",
                    self.spool.size - self.spool.offset,
                    self.spool.path,
                    self.spool.path,
                    ",".join(self.urls),
                )

    # -- the background loop ----------------------------------------------------------------

    def _loop(self) -> None:
        stop = False
        while not stop:
            try:
                item = self._queue.get(timeout=self._wait())
            except queue.Empty:
                self._safely(self._replay)
                continue
            batch: list[Record] = []
            if item is None:
                stop = True
            else:
                batch.append(item)
            while not stop and len(batch) < self._batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                else:
                    batch.append(more)
            if batch:
                self._deliver_safely(batch)
        if self.spool is not None and self.spool.pending and not self._past_deadline():
            self._safely(lambda: self._replay(force=True))
        self._safely(self._release)

    def _deliver_safely(self, batch: Sequence[Record]) -> None:
        self._safely(lambda: self.deliver(batch))
        with self._count_lock:
            self._pending -= len(batch)

    def _safely(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # nothing may escape the delivery thread
            self.stats.errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("grokwatch HTTP transport error: %s", self.stats.last_error)

    def _wait(self) -> float | None:
        if self.spool is None or not self.spool.pending:
            return None
        return max(self._next_try - time.monotonic(), 0.0) + 0.001

    def _past_deadline(self, margin: float = 0.0) -> bool:
        return self._deadline is not None and time.monotonic() + margin >= self._deadline

    def _remaining(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    # -- records to operations --------------------------------------------------------------

    def _ops(self, records: Iterable[Record]) -> list[tuple[Op, int]]:
        """Wire operations, each with the number of records it carries."""
        ops: list[tuple[Op, int]] = []
        for rec in records:
            try:
                if rec.kind == "snapshot":
                    self.skipped_snapshots += 1
                    continue
                if rec.kind == "start":
                    body = register_body(rec.run_id, rec.meta)
                    ops.append((Op(op="register", run_id=rec.run_id, body=body), 1))
                elif rec.kind == "finish":
                    body = RunFinish(summary=json_safe(rec.meta)).model_dump(mode="json")
                    ops.append((Op(op="finish", run_id=rec.run_id, body=body), 1))
                else:
                    self._add_points(ops, rec)
            except (ValidationError, ValueError, TypeError) as exc:
                self._refuse(1, f"record {rec.kind!r} of run {rec.run_id!r} is invalid: {exc}")
        return ops

    def _add_points(self, ops: list[tuple[Op, int]], rec: Record) -> None:
        points = [{"step": int(step), "values": wire_values(values)} for step, values in rec.points]
        PointsBatch.model_validate({"points": points})  # fail early on a bad record
        last = ops[-1][0] if ops else None
        if (
            last is not None
            and last["op"] == "points"
            and last["run_id"] == rec.run_id
            and len(last["body"]["points"]) + len(points) <= self.max_points
        ):
            last["body"]["points"].extend(points)
            ops[-1] = (last, ops[-1][1] + 1)
        else:
            body = {"points": points, "dropped": self.stats.dropped}
            ops.append((Op(op="points", run_id=rec.run_id, body=body), 1))

    # -- sending, spooling, replaying -------------------------------------------------------

    def _handle(self, ops: list[tuple[Op, int]]) -> None:
        if self._offline and time.monotonic() < self._next_try:
            self._to_spool(ops)  # (or drop, without a spool) until the next retry is due
            return
        if self.spool is not None and self.spool.pending:
            self._to_spool(ops)  # behind what is already spooled, to keep the order
            self._replay(force=True)
            return
        for i, (op, n) in enumerate(ops):
            if self._past_deadline():
                self._to_spool(ops[i:])
                return
            delivery, why = self._send(op)
            if delivery is Delivery.SENT:
                self.stats.delivered += n
                self._offline, self._failures = False, 0
            elif delivery is Delivery.REFUSED:
                self._refuse(n, why)
            else:
                self._went_offline(why)
                self._to_spool(ops[i:])
                return

    def _send(self, op: Op) -> tuple[Delivery, str]:
        """One operation with up to ``attempts`` tries and backoff in between."""
        delivery, why = Delivery.RETRY, ""
        for attempt in range(self.attempts):
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                break
            delivery, why = self.sender.send(op, timeout=remaining)
            if delivery is not Delivery.RETRY or attempt == self.attempts - 1:
                break
            self.retries += 1
            delay = self._delay(attempt)
            if remaining is not None and delay >= remaining:
                break
            time.sleep(delay)
        return delivery, why

    def _delay(self, failures: int) -> float:
        delay = min(self.backoff * 2.0**failures, self.max_backoff)
        return delay * (0.5 + 0.5 * self._rng.random())

    def _went_offline(self, why: str) -> None:
        if not self._offline:
            log.warning("grokwatch: detector service unreachable, spooling records (%s)", why)
        self._offline = True
        self._failures += 1
        self._next_try = time.monotonic() + self._delay(self._failures)

    def _to_spool(self, ops: Sequence[tuple[Op, int]]) -> None:
        if not ops:
            return
        records = sum(n for _, n in ops)
        if self.spool is None:
            self._drop(records, "the service is unreachable and spooling is off")
            return
        written = self.spool.append(op for op, _ in ops)
        self.spooled += sum(n for _, n in ops[:written])
        if written < len(ops):
            self._drop(sum(n for _, n in ops[written:]), f"the spool {self.spool.path} is full")

    def _replay(self, *, force: bool = False) -> None:
        """Send spooled operations in order while the service answers."""
        spool = self.spool
        if spool is None or not spool.pending:
            return
        if not force and time.monotonic() < self._next_try:
            return
        while spool.pending:
            chunk = spool.read(limit=64)
            if not chunk:
                break
            for op, end in chunk:
                if self._past_deadline():
                    return
                remaining = self._remaining()
                delivery, why = self.sender.send(op, timeout=remaining)
                if delivery is Delivery.RETRY:
                    self._went_offline(why)
                    return
                if delivery is Delivery.REFUSED:
                    self._refuse(1, why)
                else:
                    self.replayed += 1
                spool.offset = end
        spool.clear()
        if self._offline:
            log.warning("grokwatch: detector service reachable again; spool replayed")
        self._offline = False
        self._failures = 0

    def _refuse(self, records: int, why: str) -> None:
        self.refused += records
        self._drop(records, why)

    def _drop(self, records: int, why: str) -> None:
        self.stats.dropped += records
        self.stats.errors += 1
        self.stats.last_error = why
        if self.stats.errors <= 5:
            log.warning("grokwatch: dropped %d record(s): %s", records, why)

    def _decided(self, run_id: str, decision: Decision) -> None:
        self._decision = decision


@dataclasses.dataclass
class SyncResult:
    files: int = 0
    sent: int = 0
    refused: int = 0
    unsent: int = 0
    corrupt_lines: int = 0
    kept: list[Path] = dataclasses.field(default_factory=list)


def sync(
    paths: Iterable[str | Path],
    url: str | Sequence[str],
    *,
    token: str | None = None,
    timeout: float = 10.0,
    keep: bool = False,
    client: httpx.Client | None = None,
) -> SyncResult:
    """Replay spool files to the service (``grokwatch sync``); a file is removed once every
    operation in it was acknowledged or refused, unless ``keep``. Stops a file at the first
    operation the service cannot take now (it is kept for a later sync)."""
    urls = parse_urls(url)
    own = client is None
    http = client or _httpx().Client(timeout=timeout)
    sender = Sender(urls, http, token=token, timeout=timeout)
    result = SyncResult()
    try:
        for path in spool_files(paths):
            result.files += 1
            spool = Spool(path)
            for op in spool.scan():  # registrations first: a 404 re-registers with the meta
                if op["op"] == "register":
                    sender.known_meta.setdefault(op["run_id"], op["body"])
            complete = True
            while spool.pending and complete:
                chunk = spool.read(limit=256)
                if not chunk:
                    break
                for op, end in chunk:
                    delivery, why = sender.send(op)
                    if delivery is Delivery.RETRY:
                        log.warning("grokwatch sync: %s: %s", path, why)
                        complete = False
                        break
                    if delivery is Delivery.REFUSED:
                        result.refused += 1
                        log.warning("grokwatch sync: refused: %s", why)
                    else:
                        result.sent += 1
                    spool.offset = end
            result.corrupt_lines += spool.corrupt_lines
            if complete and not keep:
                spool.clear()
            else:
                result.unsent += 0 if complete else _count_lines(path, spool.offset)
                result.kept.append(path)
    finally:
        if own:
            http.close()
    return result


def _count_lines(path: Path, offset: int) -> int:
    with open(path, "rb") as f:
        f.seek(offset)
        return sum(1 for _ in f)
