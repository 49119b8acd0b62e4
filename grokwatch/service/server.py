"""Running the service under uvicorn: one worker, uvloop and httptools when installed."""

from __future__ import annotations

from grokwatch.service.settings import ServiceSettings


def serve(settings: ServiceSettings) -> None:
    """Serve :func:`~grokwatch.service.app.create_app` until SIGINT/SIGTERM (graceful stop)."""
    import uvicorn

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
    )
    uvicorn.Server(config).run()
