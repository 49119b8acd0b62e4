"""Settings of ``grokwatch serve``: typed, from ``GROKWATCH_*`` environment variables or the CLI.

=================================  ==============================  ==============================
environment variable               default                         meaning
=================================  ==============================  ==============================
``GROKWATCH_HOST``                 ``127.0.0.1``                   bind address
``GROKWATCH_PORT``                 ``8321``                        bind port (0: any free port)
``GROKWATCH_DB_PATH``              ``~/.grokwatch/service.db``     SQLite run database (WAL)
``GROKWATCH_TOKEN``                unset                           bearer token for writes;
                                                                   required off loopback
``GROKWATCH_MAX_BODY_BYTES``       ``1048576``                     request body limit (413)
``GROKWATCH_MAX_LIVE_RUNS``        ``10000``                       unfinished runs in memory (429)
``GROKWATCH_FINISHED_TTL``         ``300``                         seconds a finished run stays
                                                                   exported
``GROKWATCH_IDLE_TTL``             ``86400``                       seconds without a report before
                                                                   an unfinished run is unloaded
``GROKWATCH_SWEEP_INTERVAL``       ``5``                           seconds between TTL sweeps
``GROKWATCH_LOG_LEVEL``            ``info``                        uvicorn log level
``GROKWATCH_ACCESS_LOG``           ``false``                       per-request access log
``GROKWATCH_FORECASTER``           ``default``                     ``default`` (the model shipped
                                                                   with grokwatch), ``none``
                                                                   (rule-based), or a model file
``GROKWATCH_GC_THRESHOLD``         ``[50000, 20, 1000]``           ``gc.set_threshold`` of the
                                                                   serve process (JSON list)
=================================  ==============================  ==============================
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_service_db() -> Path:
    return Path.home() / ".grokwatch" / "service.db"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ServiceSettings(BaseSettings):
    """Resolved service configuration (frozen). See the module table for every field."""

    model_config = SettingsConfigDict(env_prefix="GROKWATCH_", frozen=True, extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8321, ge=0, le=65535)
    db_path: Path = Field(default_factory=default_service_db)
    token: SecretStr | None = None
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_live_runs: int = Field(default=10_000, ge=1)
    finished_ttl: float = Field(default=300.0, ge=0.0)
    idle_ttl: float = Field(default=86_400.0, gt=0.0)
    sweep_interval: float = Field(default=5.0, gt=0.0)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    access_log: bool = False
    forecaster: str = "default"
    gc_threshold: tuple[int, int, int] | None = (50_000, 20, 1000)

    @model_validator(mode="after")
    def _token_off_loopback(self) -> ServiceSettings:
        if not is_loopback(self.host) and not self.token_value:
            raise ValueError(
                f"binding the non-loopback address host={self.host!r} requires a bearer token "
                "(set GROKWATCH_TOKEN or --token)"
            )
        return self

    @property
    def token_value(self) -> str | None:
        """The token as text, ``None`` when unset or empty."""
        if self.token is None:
            return None
        return self.token.get_secret_value() or None
