"""The detector service's FastAPI application: :func:`create_app`.

A thin adapter over :class:`~grokwatch.service.state.RunTable`. Endpoints are ``async``;
store writes and detector work run one at a time under one lock. A point batch of at most
:data:`LOOP_POINTS` points for a run in memory is stored and judged right on the event loop
when nothing else holds the table: two thread hand-offs would cost more than such work, and
while a worker thread runs Python the event loop waits for the GIL even to read the next
request. Everything else -- bigger batches, and everything that grows with a run's history
(rebuilding a run, reading its state, finishing, listing, loading at start) -- runs on one
worker thread, where every batch queued in a row is stored in one transaction.
``/metrics`` is rendered on a separate thread.

Every answer is made before its batch's forecast: the phase and events in it are current, the
forecast is the run's previous one. The forecast follows on the event loop once the requests
already waiting went (:meth:`Service.forecast_in_background`), so a request waits for at most
about one run's forecast; reading a run brings its forecast up to date first.

Request bodies are read with a size limit and parsed with ``model_validate_json`` (faster than
FastAPI's default body handling); their schemas still land in ``/openapi.json``.

Resources are injected: ``settings``, ``store`` (default: a :class:`~grokwatch.store.SQLiteStore`
at ``settings.db_path``, opened and closed by the lifespan; an injected store is left open) and
``registry`` (default: a fresh ``CollectorRegistry``; never the global one).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Annotated, Any, ParamSpec, TypeVar

import anyio.to_thread
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from grokwatch.exceptions import (
    AuthError,
    NotReadyError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from grokwatch.service.errors import error_responses, install_error_handlers
from grokwatch.service.live import (
    Clock,
    DetectorFactory,
    TableLimits,
    detector_for,
    load_forecaster,
)
from grokwatch.service.payloads import info_of, ingest_result, state_of
from grokwatch.service.settings import ServiceSettings
from grokwatch.service.state import RunTable
from grokwatch.service.telemetry import LatencyMiddleware, ServiceMetrics
from grokwatch.service.worker import Worker
from grokwatch.store import SQLiteStore, Store
from grokwatch.wire import (
    API_PREFIX,
    RUN_ID_PATTERN,
    Health,
    IngestResult,
    PointsBatch,
    RunCreate,
    RunFinish,
    RunList,
    RunState,
)

log = logging.getLogger("grokwatch.service")

P = ParamSpec("P")
T = TypeVar("T")

REQUEST_MODELS: tuple[type[BaseModel], ...] = (RunCreate, PointsBatch, RunFinish)

_BEARER = HTTPBearer(
    auto_error=False,
    description="Required for writes when the service has a token (GROKWATCH_TOKEN).",
)
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]

RunIdPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        pattern=RUN_ID_PATTERN,
        description="Run id: 1-128 of A-Z a-z 0-9 _ . - (not starting with a symbol).",
        examples=["run-0"],
    ),
]


LOOP_POINTS = 500
"""The largest point batch stored and judged on the event loop (a few milliseconds of work)."""
LOOP_FORECAST_POINTS = 50
"""The most points a forecast made on the event loop reads (a few milliseconds: a young run's
report of ten points takes about one); a bigger one -- a replay after late points, a big
batch -- is made on the worker thread."""


class Service:
    """What the lifespan creates: the run table and the worker thread that mutates it.

    Every table operation holds ``_lock``. :meth:`call` queues it on the worker thread;
    :meth:`ingest` and :meth:`forecast_in_background` do small work right on the event loop
    when the table is free (see the module docstring).
    """

    def __init__(self, table: RunTable, metrics: ServiceMetrics) -> None:
        self.table = table
        self.metrics = metrics
        self.stopping = False
        self.load_error = ""
        self._worker = Worker()
        self._lock = threading.Lock()
        self._ingest_group = self._locked_ingest  # one object: the worker groups calls by it
        self._stale = asyncio.Event()  # set when a batch leaves a forecast behind

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the worker thread (FIFO with every other queued table operation)."""
        job = functools.partial(fn, *args, **kwargs)

        def locked() -> T:
            with self._lock:
                return job()

        return await self._worker.call(locked)

    async def ingest(self, run_id: str, batch: PointsBatch) -> IngestResult:
        """Store and judge a batch: here when it is small, its run in memory and the table
        free, else on the worker, with every batch queued next to it in one transaction."""
        if len(batch.points) <= LOOP_POINTS and self._lock.acquire(blocking=False):
            try:
                result = (
                    self._ingest([(run_id, batch)])[0] if self.table.is_resident(run_id) else None
                )
            finally:
                self._lock.release()
            if isinstance(result, Exception):
                raise result
            if result is not None:
                return result
        done: IngestResult = await self._worker.call_many(self._ingest_group, (run_id, batch))
        return done

    def _locked_ingest(
        self, batches: Sequence[tuple[str, PointsBatch]]
    ) -> list[IngestResult | Exception]:
        with self._lock:
            return self._ingest(batches)

    def _ingest(self, batches: Sequence[tuple[str, PointsBatch]]) -> list[IngestResult | Exception]:
        done = self.table.ingest_many(batches)
        return [r if isinstance(r, Exception) else ingest_result(r) for r in done]

    async def load(self) -> None:
        started = time.perf_counter()
        try:
            n = await self.call(self.table.load)
        except Exception as exc:  # the service still answers; readiness reports the failure
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("loading the run table failed")
            return
        log.info("loaded %d live runs in %.2f s", n, time.perf_counter() - started)

    async def forecast_in_background(self) -> None:
        """Bring the forecasts the answers left behind up to date, one run per turn of the
        event loop: the requests that became ready meanwhile go first, so a request waits
        for at most about one run's forecast, and the forecasts lag the reports only by as
        long as requests keep the loop busy."""
        backlog = self.table.backlog
        loop = asyncio.get_running_loop()
        backlog.on_stale = functools.partial(loop.call_soon_threadsafe, self._stale.set)
        if backlog:
            self._stale.set()
        while True:
            await self._stale.wait()
            self._stale.clear()
            while backlog:
                await asyncio.sleep(0)  # every request ready by now goes first
                if backlog.next_points > LOOP_FORECAST_POINTS:
                    await self.call(backlog.flush_oldest, 1)
                elif self._lock.acquire(blocking=False):
                    try:
                        backlog.flush_oldest(1)
                    finally:
                        self._lock.release()
                else:  # the worker holds the table
                    await asyncio.sleep(0.001)

    async def sweep_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            gone = await self.call(self.table.sweep)
            self.metrics.inc("unloaded_runs", len(gone))

    def close(self) -> None:
        self._worker.close()


def is_json(content_type: str | None) -> bool:
    """True for ``application/json`` and ``application/*+json`` (parameters allowed)."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes before reading them all, and any
    body not declared as JSON (a browser can send text/plain or a form across origins without
    asking the service first; it cannot send application/json that way)."""
    content_type = request.headers.get("content-type")
    if not is_json(content_type):
        raise UnsupportedMediaTypeError(
            f"writes take Content-Type: application/json, got {content_type!r}"
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"request body of {declared} bytes exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status_code=status, media_type="application/json")


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def _protected_docs(app: FastAPI, authorize: Callable[..., Any]) -> None:
    """``/openapi.json`` and ``/docs`` behind the token (FastAPI's own routes are off)."""
    from fastapi.openapi.docs import get_swagger_ui_html

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(authorize)])
    async def openapi_json() -> Response:
        return Response(
            json.dumps(app.openapi(), separators=(",", ":")), media_type="application/json"
        )

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(authorize)])
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)


def create_app(
    settings: ServiceSettings | None = None,
    store: Store | None = None,
    registry: CollectorRegistry | None = None,
    *,
    clock: Clock = time.time,
    detector_factory: DetectorFactory | None = None,
) -> FastAPI:
    """Build the detector service (see the module docstring for the injected resources).

    ``clock`` (wall time) drives the TTLs; ``detector_factory`` builds each run's
    :class:`~grokwatch.detector.RunDetector` from its registration (default: the budget and
    the agent's event rules), the place to plug a forecaster in.
    """
    settings = settings or ServiceSettings()
    registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
    metrics = ServiceMetrics(registry, info_labels=settings.info_labels)
    limits = TableLimits(
        max_live_runs=settings.max_live_runs,
        finished_ttl=settings.finished_ttl,
        idle_ttl=settings.idle_ttl,
        max_measures_per_run=settings.max_measures_per_run,
    )
    token = settings.token_value
    body_limit = settings.max_body_bytes
    if detector_factory is None:
        detector_factory = functools.partial(
            detector_for, forecaster=load_forecaster(settings.forecaster)
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = store is None
        the_store: Store = SQLiteStore(settings.db_path) if store is None else store
        table = RunTable(
            the_store,
            limits,
            clock=clock,
            detector_factory=detector_factory,
            on_forecast=metrics.forecast_lag,
        )
        service = Service(table, metrics)
        app.state.service = service
        metrics.table = service.table
        loading = asyncio.create_task(service.load())
        tasks = [
            asyncio.create_task(service.sweep_forever(settings.sweep_interval)),
            asyncio.create_task(service.forecast_in_background()),
        ]
        try:
            yield
        finally:
            service.stopping = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, loading, return_exceptions=True)
            service.close()
            metrics.table = None
            app.state.service = None
            if own:
                the_store.close()

    def current() -> Service:
        service: Service | None = app.state.service
        if service is None or service.stopping:
            raise NotReadyError("the service is not running (starting or shutting down)")
        return service

    protect_reads = settings.protect_reads and token is not None
    app = FastAPI(
        title="grokwatch detector service",
        version="1",
        description=(
            "Training runs report evaluation points; the service keeps each run's history, "
            "judges it with the grokwatch detector and exports it to Prometheus."
        ),
        lifespan=lifespan,
        docs_url=None if protect_reads else "/docs",
        redoc_url=None if protect_reads else "/redoc",
        openapi_url=None if protect_reads else "/openapi.json",
    )
    app.add_middleware(LatencyMiddleware, histogram=metrics.latency)
    install_error_handlers(app, metrics.reject)

    async def authorize(credentials: BearerCredentials) -> None:
        if token is None:
            return
        given = "" if credentials is None else credentials.credentials
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise AuthError("a valid bearer token is required")

    writes: list[Any] = [Depends(authorize)] if token is not None else []
    reads: list[Any] = [Depends(authorize)] if protect_reads else []

    @app.post(
        f"{API_PREFIX}/runs",
        response_model=RunState,
        status_code=201,
        dependencies=writes,
        openapi_extra=_body_doc(RunCreate),
        responses={
            200: {"model": RunState, "description": "Already registered (nothing changed)."},
            **error_responses(401, 413, 415, 422, 429, 503),
        },
        summary="Register a run",
    )
    async def register_run(request: Request) -> Response:
        body = RunCreate.model_validate_json(await read_body(request, body_limit))
        service = current()

        def work() -> tuple[RunState, bool]:
            run, created = service.table.register(body)
            return state_of(run, live=service.table.is_live(run.run_id)), created

        state, created = await service.call(work)
        if created:
            metrics.inc("registered_runs")
        return _json(state, 201 if created else 200)

    @app.post(
        f"{API_PREFIX}/runs/{{run_id}}/points",
        response_model=IngestResult,
        dependencies=writes,
        openapi_extra=_body_doc(PointsBatch),
        responses=error_responses(401, 404, 413, 415, 422, 429, 503),
        summary="Post a batch of evaluation points",
    )
    async def post_points(run_id: RunIdPath, request: Request) -> Response:
        batch = PointsBatch.model_validate_json(await read_body(request, body_limit))
        result = await current().ingest(run_id, batch)
        metrics.inc("ingest_requests")
        metrics.inc("ingested_points", result.accepted)
        metrics.inc("duplicate_points", result.duplicates)
        return _json(result)

    @app.post(
        f"{API_PREFIX}/runs/{{run_id}}/finish",
        response_model=RunState,
        dependencies=writes,
        openapi_extra=_body_doc(RunFinish),
        responses=error_responses(401, 404, 413, 415, 422, 429, 503),
        summary="Finish a run",
    )
    async def finish_run(run_id: RunIdPath, request: Request) -> Response:
        body = RunFinish.model_validate_json(await read_body(request, body_limit))
        service = current()

        def work() -> RunState:
            run = service.table.finish(run_id, body.summary)
            return state_of(run, live=service.table.is_live(run_id))

        state = await service.call(work)
        metrics.inc("finished_runs")
        return _json(state)

    @app.get(
        f"{API_PREFIX}/runs/{{run_id}}",
        response_model=RunState,
        dependencies=reads,
        responses=error_responses(*([401] if protect_reads else []), 404, 422, 503),
        summary="Read a run's state, phase, events, decision and forecast",
    )
    async def get_run(run_id: RunIdPath) -> Response:
        service = current()

        def work() -> RunState:
            return state_of(service.table.get(run_id), live=service.table.is_live(run_id))

        return _json(await service.call(work))

    @app.get(
        f"{API_PREFIX}/runs",
        response_model=RunList,
        dependencies=reads,
        responses=error_responses(*([401] if protect_reads else []), 422, 503),
        summary="List runs (oldest first)",
    )
    async def list_runs(
        offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        service = current()

        def work() -> RunList:
            table = service.table
            records = table.records()
            page = records[offset : offset + limit]
            memory = {r.run_id: r for r in table.current()}
            runs = [info_of(r, memory.get(r.run_id), live=r.run_id in memory) for r in page]
            return RunList(runs=runs, total=len(records), offset=offset, limit=limit)

        return _json(await service.call(work))

    @app.get("/healthz", response_model=Health, summary="Liveness")
    async def healthz() -> Response:
        return _json(Health(status="ok"))

    @app.get(
        "/readyz",
        response_model=Health,
        responses={503: {"model": Health, "description": "Loading, stopping or failed."}},
        summary="Readiness: the run table is loaded",
    )
    async def readyz() -> Response:
        service: Service | None = app.state.service
        if service is None or service.stopping:
            return _json(Health(status="unavailable", detail="not running"), 503)
        table = service.table
        if service.load_error:
            return _json(Health(status="unavailable", detail=service.load_error), 503)
        health = Health(
            status="ok" if table.loaded else "loading",
            live_runs=table.live_unfinished,
            loaded_runs=len(table),
            forecast_backlog=len(table.backlog),
        )
        return _json(health, 200 if table.loaded else 503)

    @app.get(
        "/metrics",
        dependencies=reads,
        response_class=PlainTextResponse,
        summary="Prometheus exposition",
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def prometheus_metrics() -> Response:
        body = await anyio.to_thread.run_sync(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _, defs = models_json_schema(
                [(m, "validation") for m in REQUEST_MODELS],
                ref_template="#/components/schemas/{model}",
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, sub in defs.get("$defs", {}).items():
                components.setdefault(name, sub)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    if protect_reads:
        _protected_docs(app, authorize)
    app.state.settings = settings
    app.state.service = None  # the lifespan's Service while it runs
    app.state.registry = registry
    return app
