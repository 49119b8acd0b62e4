"""A local spool of wire operations for when the detector service is unreachable.

A spool is an append-only JSON-lines file; each line is one operation the service would have
received::

    {"op": "register", "run_id": "r1", "body": {...RunCreate...}}
    {"op": "points",   "run_id": "r1", "body": {...PointsBatch...}}
    {"op": "finish",   "run_id": "r1", "body": {...RunFinish...}}

Replaying a spool is safe to repeat: the service ignores points it already has (idempotent on
run and step), registering twice is a no-op and finishing twice only rewrites the summary. A
line cut short by a crash is skipped (and counted) on reading.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Literal, TypedDict

log = logging.getLogger("grokwatch")

OpName = Literal["register", "points", "finish"]


class Op(TypedDict):
    op: OpName
    run_id: str
    body: dict[str, Any]


def default_spool_dir() -> Path:
    """``$GROKWATCH_HOME/spool``, else ``~/.grokwatch/spool``."""
    home = Path(os.environ.get("GROKWATCH_HOME", Path.home() / ".grokwatch"))
    return home / "spool"


class Spool:
    """One spool file: :meth:`append` writes lines, :meth:`read` yields them from an offset.

    The file is created on the first append, so a transport that never went offline leaves no
    file. Appends are thread-safe. ``max_bytes`` bounds the file; appends beyond it are refused
    (the caller counts them as dropped).
    """

    def __init__(self, path: str | Path, *, max_bytes: int = 1 << 30, fsync: bool = False):
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes=}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.fsync = fsync
        self._file: IO[bytes] | None = None
        self.size = self.path.stat().st_size if self.path.exists() else 0
        self.offset = 0
        """Bytes of the file already replayed (kept in memory; replays are idempotent)."""
        self.corrupt_lines = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> bool:
        return self.size > self.offset

    def append(self, ops: Iterable[Op]) -> int:
        """Append operations; returns how many were written (the rest did not fit)."""
        lines = [
            json.dumps(op, separators=(",", ":"), allow_nan=False).encode() + b"\n" for op in ops
        ]
        with self._lock:
            fit: list[bytes] = []
            size = self.size
            for line in lines:
                if size + len(line) > self.max_bytes:
                    break
                fit.append(line)
                size += len(line)
            if not fit:
                return 0
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "ab")  # noqa: SIM115 - kept open between appends
            self._file.write(b"".join(fit))
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())
            self.size = size
            return len(fit)

    def read(self, limit: int = 1000) -> list[tuple[Op, int]]:
        """Up to ``limit`` operations after :attr:`offset`, each with the offset past it."""
        out: list[tuple[Op, int]] = []
        if not self.pending:
            return out
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            position = self.offset
            for raw in f:
                position += len(raw)
                op = parse_line(raw)
                if op is None:
                    self.corrupt_lines += 1
                    if not out:
                        self.offset = position
                    continue
                out.append((op, position))
                if len(out) >= limit:
                    break
        return out

    def scan(self) -> Iterator[Op]:
        """Every readable operation in the file, from the start (does not move the offset)."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            for raw in f:
                op = parse_line(raw)
                if op is not None:
                    yield op

    def clear(self) -> None:
        """Forget everything (after a complete replay): truncate and remove the file."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.size = self.offset = 0

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def parse_line(raw: bytes) -> Op | None:
    """One spool line, or ``None`` when it is cut short or not an operation."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if (
        not isinstance(data, dict)
        or data.get("op") not in ("register", "points", "finish")
        or not isinstance(data.get("run_id"), str)
        or not isinstance(data.get("body"), dict)
    ):
        return None
    return Op(op=data["op"], run_id=data["run_id"], body=data["body"])


def spool_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Spool files named directly, or every ``*.jsonl`` in a named directory (sorted)."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(p.glob("*.jsonl"))
        else:
            yield p
