"""The grokwatch detector service: many runs report over HTTP, Prometheus scrapes it.

``grokwatch serve`` runs :func:`create_app` under uvicorn; it needs the ``service`` extra
(FastAPI, uvicorn, pydantic-settings). The request and answer models are
:mod:`grokwatch.wire`, which the agent's transport shares without importing this package.
"""

from grokwatch.service.app import create_app
from grokwatch.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
