"""Where an agent's records go: :func:`open_transport`, the one place a transport is chosen."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from grokwatch.exceptions import ConfigError
from grokwatch.http_transport import HTTPTransport
from grokwatch.store import SQLiteStore
from grokwatch.transport import NullTransport, StoreTransport, Transport


def default_db_path() -> Path:
    """``$GROKWATCH_DB``, else ``$GROKWATCH_HOME/runs.db``, else ``~/.grokwatch/runs.db``."""
    if "GROKWATCH_DB" in os.environ:
        return Path(os.environ["GROKWATCH_DB"])
    home = Path(os.environ.get("GROKWATCH_HOME", Path.home() / ".grokwatch"))
    return home / "runs.db"


Target = Transport | str | os.PathLike[str] | Sequence[str] | None


def open_transport(target: Target = "auto") -> Transport:
    """Where an agent's records go: the one place a transport is chosen.

    Args:
        target: what :class:`~grokwatch.Agent` got as ``transport``:

            - ``"auto"`` (the agent's default): ``$GROKWATCH_DETECTOR`` if set (a detector
              service URL, or comma-separated replicas), else the SQLite run table at
              :func:`default_db_path`;
            - a URL ``http(s)://...`` (or comma-separated URLs, or a list of them): an
              :class:`~grokwatch.http_transport.HTTPTransport` to that service;
            - any other string or path: a SQLite run table in that file;
            - ``None``: a :class:`NullTransport` (nothing is kept);
            - a :class:`Transport`: itself.

    Raises:
        ConfigError: ``target`` is none of these.

    Example:
        ``Agent(model, transport="runs.db")``, ``Agent(model, transport="http://det:8321")``,
        ``Agent(model, transport=None)``.
    """
    if isinstance(target, Transport):
        return target
    if target is None:
        return NullTransport()
    if isinstance(target, str) and target == "auto":
        target = os.environ.get("GROKWATCH_DETECTOR") or default_db_path()
    urls = [target] if isinstance(target, str) else target
    if (
        isinstance(urls, list | tuple)
        and urls
        and all(isinstance(u, str) and u.strip().startswith(("http://", "https://")) for u in urls)
    ):
        return HTTPTransport(list(urls) if len(urls) > 1 else urls[0])
    if isinstance(target, str | os.PathLike):
        path = Path(target)
        if path.is_dir():
            raise ConfigError(f"transport path {str(path)!r} is a directory, not a database file")
        return StoreTransport(opener=lambda: SQLiteStore(path))
    raise ConfigError(
        f"transport must be a Transport, a service URL, a database path, 'auto' or None, "
        f"got {target!r}"
    )
