"""Running the service under uvicorn: one worker, uvloop and httptools when installed."""

from __future__ import annotations

from grokwatch.service.settings import ServiceSettings


def serve(settings: ServiceSettings) -> None:
    """Serve :func:`~grokwatch.service.app.create_app` until SIGINT/SIGTERM (graceful stop).

    Process-wide choices live here, not in the app factory: uvloop/httptools when installed,
    and the garbage-collector thresholds of ``settings.gc_threshold``.
    """
    import gc

    import uvicorn

    if settings.gc_threshold is not None:
        # the service allocates many short-lived containers per request: at the default gen-0
        # threshold (700) full collections come every few seconds and stall the requests in
        # flight; this process is ours to tune
        gc.set_threshold(*settings.gc_threshold)

    from grokwatch.service.app import create_app

    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="auto",
        http="auto",
        lifespan="on",
        access_log=settings.access_log,
        log_level=settings.log_level,
        timeout_graceful_shutdown=5,
        server_header=False,
        ssl_certfile=None if settings.ssl_certfile is None else str(settings.ssl_certfile),
        ssl_keyfile=None if settings.ssl_keyfile is None else str(settings.ssl_keyfile),
    )
    uvicorn.Server(config).run()
