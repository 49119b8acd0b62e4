"""The grokwatch detector service: many runs report over HTTP, Prometheus scrapes it.

``grokwatch serve`` runs :func:`create_app` under uvicorn. The wire schemas in
:mod:`grokwatch.service.schemas` are shared with the agent's
:class:`~grokwatch.http_transport.HTTPTransport` and need nothing beyond pydantic, so importing
them (or ``grokwatch``) does not import the service's own dependencies (FastAPI, uvicorn,
pydantic-settings: the ``service`` extra); :func:`create_app` and :class:`ServiceSettings` are
imported on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from grokwatch.service.app import create_app
    from grokwatch.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from grokwatch.service.app import create_app

        return create_app
    if name == "ServiceSettings":
        from grokwatch.service.settings import ServiceSettings

        return ServiceSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
