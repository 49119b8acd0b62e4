"""Settings of ``grokwatch serve``: typed, from ``GROKWATCH_*`` environment variables or the CLI.

=================================  ==============================  ==============================
environment variable               default                         meaning
=================================  ==============================  ==============================
``GROKWATCH_HOST``                 ``127.0.0.1``                   bind address
``GROKWATCH_PORT``                 ``8321``                        bind port (0: any free port)
``GROKWATCH_DB_PATH``              ``~/.grokwatch/service.db``     SQLite run database (WAL)
``GROKWATCH_TOKEN``                unset                           bearer token for writes;
                                                                   required off loopback, at
                                                                   least 16 characters there
``GROKWATCH_PROTECT_READS``        ``false``                       also require the token for
                                                                   reads (runs, ``/metrics``,
                                                                   ``/docs``, ``/openapi.json``;
                                                                   not the health probes)
``GROKWATCH_SSL_CERTFILE``         unset                           serve HTTPS with this PEM
                                                                   certificate (chain)
``GROKWATCH_SSL_KEYFILE``          unset                           ... and this PEM private key
``GROKWATCH_INFO_LABELS``          ``["experiment", "team"]``      run labels exported on
                                                                   ``grokwatch_run_info``
``GROKWATCH_MAX_MEASURES_PER_RUN`` ``1024``                        distinct measure names per
                                                                   run (more are refused and
                                                                   counted)
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
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_TOKEN_LENGTH = 16
"""Shortest token accepted off loopback (``secrets.token_urlsafe()`` gives 43 characters)."""

_LABEL_NAME = re.compile(r"(?!__)[A-Za-z_][A-Za-z0-9_]*")


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
    protect_reads: bool = False
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    info_labels: tuple[str, ...] = ("experiment", "team")
    max_measures_per_run: int = Field(default=1024, ge=1, le=1_000_000)
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
        token = self.token_value
        if not is_loopback(self.host):
            if not token:
                raise ValueError(
                    f"binding the non-loopback address host={self.host!r} requires a bearer "
                    "token (set GROKWATCH_TOKEN or --token)"
                )
            if len(token) < MIN_TOKEN_LENGTH or len(set(token)) < 4:
                raise ValueError(
                    f"binding the non-loopback address host={self.host!r} requires a strong "
                    f"token: at least {MIN_TOKEN_LENGTH} characters, not one repeated (got "
                    f"{len(token)} characters); generate one with "
                    '`python -c "import secrets; print(secrets.token_urlsafe())"`'
                )
        if self.protect_reads and not token:
            raise ValueError("protect_reads=True requires a token (set GROKWATCH_TOKEN)")
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> ServiceSettings:
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError(
                "TLS needs both ssl_certfile and ssl_keyfile, got "
                f"ssl_certfile={self.ssl_certfile} and ssl_keyfile={self.ssl_keyfile}"
            )
        return self

    @model_validator(mode="after")
    def _info_labels(self) -> ServiceSettings:
        for name in self.info_labels:
            if not _LABEL_NAME.fullmatch(name) or name == "run_id":
                raise ValueError(
                    f"info_labels: {name!r} is not a Prometheus label name other than run_id"
                )
        if len(set(self.info_labels)) != len(self.info_labels):
            raise ValueError(f"info_labels has duplicates: {self.info_labels}")
        return self

    @property
    def token_value(self) -> str | None:
        """The token as text, ``None`` when unset or empty."""
        if self.token is None:
            return None
        return self.token.get_secret_value() or None
