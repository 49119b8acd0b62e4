"""Run storage: an embedded SQLite database (default) and an in-memory store for tests.

Schema (``user_version`` = :data:`SCHEMA_VERSION`)::

    runs(run_id PK, created_at, updated_at, finished_at, meta JSON, summary JSON)
    points(run_id, step, "values" BLOB, PK(run_id, step))        -- one row per evaluation
    measure_sets(id PK, names JSON UNIQUE)                        -- the names of a record
    snapshots(run_id, step, name, dtype, shape JSON, data BLOB, PK(run_id, step, name))

A point's ``values`` are a binary record (:mod:`grokwatch.records`): the id of its measure
names in ``measure_sets``, then one float64 per name. Databases of versions 1 and 2 (their
records in the older formats :mod:`grokwatch.records` still reads) are upgraded in place and
any other version is refused with :class:`~grokwatch.exceptions.SchemaError`. The upgrade is
one-way: an older grokwatch refuses the upgraded file, and one that had it open fails on the
new records: stop older processes first. A store registers at most :data:`MAX_MEASURE_SETS`
sets; past them a record carries its names itself, as in version 2.

Points are idempotent on ``(run_id, step)``: a duplicate step is ignored, an out-of-order step
is accepted. The database runs in WAL mode, so a process killed mid-write leaves the last
committed transaction intact; copying the log back into the database file (a checkpoint) is
left to SQLite, in the commit that takes the log past 1000 pages.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from grokwatch.exceptions import SchemaError, StoreError, UnknownRunError
from grokwatch.records import decode_values, names_prefix, pack, record_set, set_prefix, unpack

SCHEMA_VERSION = 3
"""3: measure names once per set; 2: names in every record; 1: values as JSON text (versions 1
and 2 are still read, see the module docstring)."""

MAX_MEASURE_SETS = 10_000
"""Measure sets a store registers; records of further sets carry their names (schema 2)."""


@dataclasses.dataclass(frozen=True)
class RunRecord:
    run_id: str
    created_at: float
    updated_at: float
    finished_at: float | None
    meta: Mapping[str, Any]
    summary: Mapping[str, Any]
    n_points: int = 0


class Store(Protocol):
    """What the agent and the service need from a run database."""

    def create_run(self, run_id: str, meta: Mapping[str, Any], *, exist_ok: bool = True) -> bool:
        """Register a run; returns False when it already existed (its meta is kept)."""

    def add_points(self, run_id: str, points: Iterable[tuple[int, Mapping[str, float]]]) -> int:
        """Insert evaluation points; returns how many were new (duplicates are ignored)."""

    def add_points_many(
        self, batches: Sequence[tuple[str, Iterable[tuple[int, Mapping[str, float]]]]]
    ) -> list[int]:
        """:meth:`add_points` for several runs at once, all or nothing (one transaction);
        returns how many points of each batch were new."""

    def add_snapshot(self, run_id: str, step: int, arrays: Mapping[str, np.ndarray]) -> None: ...

    def update_summary(
        self, run_id: str, summary: Mapping[str, Any], *, finished: bool = False
    ) -> None: ...

    def get_run(self, run_id: str) -> RunRecord: ...

    def list_runs(self) -> list[RunRecord]: ...

    def points(self, run_id: str) -> list[tuple[int, dict[str, float]]]: ...

    def snapshots(self, run_id: str) -> dict[int, dict[str, np.ndarray]]: ...

    def close(self) -> None: ...


_DDL = (
    "CREATE TABLE IF NOT EXISTS runs ("
    " run_id TEXT PRIMARY KEY, created_at REAL NOT NULL, updated_at REAL NOT NULL,"
    " finished_at REAL, meta TEXT NOT NULL, summary TEXT NOT NULL DEFAULT '{}')",
    'CREATE TABLE IF NOT EXISTS points (run_id TEXT NOT NULL, step INTEGER NOT NULL, "values"'
    " BLOB NOT NULL, PRIMARY KEY (run_id, step)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS measure_sets (id INTEGER PRIMARY KEY, names TEXT NOT NULL UNIQUE)",
    "CREATE TABLE IF NOT EXISTS snapshots (run_id TEXT NOT NULL, step INTEGER NOT NULL,"
    " name TEXT NOT NULL, dtype TEXT NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL,"
    " PRIMARY KEY (run_id, step, name)) WITHOUT ROWID",
)


class SQLiteStore:
    """The default store: one SQLite file in WAL mode, safe to share between threads."""

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._prefixes: dict[tuple[str, ...], bytes] = {}  # measure names -> record prefix
        self._measure_sets: dict[int, tuple[str, ...]] = {}  # id -> measure names
        try:
            self._db = sqlite3.connect(
                str(path), timeout=timeout, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open run database {str(path)!r}: {exc}") from exc

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version not in (0, 1, 2, SCHEMA_VERSION):  # 0: a new file; 1, 2: upgraded in place
            raise SchemaError(
                f"run database {str(self.path)!r} has schema version {version}; "
                f"this grokwatch reads versions 1 to {SCHEMA_VERSION}"
            )
        with self._tx() as db:
            for statement in _DDL:
                db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._load_sets()

    def _load_sets(self) -> None:
        with self._lock:
            rows = self._db.execute("SELECT id, names FROM measure_sets").fetchall()
        self._learn({tuple(json.loads(names)): set_id for set_id, names in rows})

    def _records(
        self, db: sqlite3.Connection, rows: Iterable[tuple[int, Mapping[str, float]]]
    ) -> tuple[list[tuple[int, bytes]], dict[tuple[str, ...], int]]:
        """The stored records of ``rows`` (steps and values) and the measure sets they
        registered, inside the caller's transaction: the caches learn those sets only once
        it committed. Past :data:`MAX_MEASURE_SETS` sets a record carries its names itself
        (the schema 2 record, still read), so made-up names cannot grow the caches."""
        prefixes = self._prefixes
        new: dict[tuple[str, ...], int] = {}
        out = []
        for step, values in rows:
            names = tuple(values)
            prefix = prefixes.get(names)
            if prefix is None:
                if names not in new and len(prefixes) + len(new) < MAX_MEASURE_SETS:
                    text = json.dumps(names, separators=(",", ":"))
                    db.execute("INSERT OR IGNORE INTO measure_sets(names) VALUES (?)", (text,))
                    (new[names],) = db.execute(
                        "SELECT id FROM measure_sets WHERE names=?", (text,)
                    ).fetchone()
                prefix = set_prefix(new[names]) if names in new else names_prefix(names)
            out.append((int(step), prefix + pack(values)))
        return out, new

    def _learn(self, sets: Mapping[tuple[str, ...], int]) -> None:
        for names, set_id in sets.items():
            self._measure_sets[set_id] = names
            self._prefixes[names] = set_prefix(set_id)

    def _decode(self, raw: bytes | str, where: str) -> dict[str, float]:
        if isinstance(raw, str) or (set_id := record_set(raw)) is None:
            return decode_values(raw)
        if set_id not in self._measure_sets:  # registered by another process meanwhile
            self._load_sets()
            if set_id not in self._measure_sets:
                raise StoreError(f"{where}: unknown measure set {set_id} (a damaged database?)")
        names = self._measure_sets[set_id]
        return unpack(names, raw)

    class _Tx:
        def __init__(self, store: SQLiteStore) -> None:
            self.store = store

        def __enter__(self) -> sqlite3.Connection:
            self.store._lock.acquire()
            self.store._db.execute("BEGIN IMMEDIATE")
            return self.store._db

        def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
            try:
                self.store._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
            finally:
                self.store._lock.release()

    def _tx(self) -> SQLiteStore._Tx:
        return SQLiteStore._Tx(self)

    def _require(self, db: sqlite3.Connection, run_id: str) -> None:
        if db.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone() is None:
            raise UnknownRunError(run_id)

    def create_run(self, run_id: str, meta: Mapping[str, Any], *, exist_ok: bool = True) -> bool:
        now = time.time()
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO runs(run_id, created_at, updated_at, meta) VALUES (?,?,?,?)",
                (run_id, now, now, json.dumps(dict(meta), default=str)),
            )
            created = cur.rowcount == 1
        if not created and not exist_ok:
            raise StoreError(f"run {run_id!r} already exists")
        return created

    def add_points(self, run_id: str, points: Iterable[tuple[int, Mapping[str, float]]]) -> int:
        return self.add_points_many([(run_id, points)])[0]

    def add_points_many(
        self, batches: Sequence[tuple[str, Iterable[tuple[int, Mapping[str, float]]]]]
    ) -> list[int]:
        added: list[int] = []
        learned: dict[tuple[str, ...], int] = {}
        now = time.time()
        with self._tx() as db:
            for run_id, points in batches:
                touched = db.execute("UPDATE runs SET updated_at=? WHERE run_id=?", (now, run_id))
                if touched.rowcount != 1:
                    raise UnknownRunError(run_id)
                records, new = self._records(db, points)
                learned.update(new)
                before = db.total_changes
                db.executemany(
                    'INSERT OR IGNORE INTO points(run_id, step, "values") VALUES (?,?,?)',
                    [(run_id, step, record) for step, record in records],
                )
                added.append(db.total_changes - before)
        self._learn(learned)
        return added

    def add_snapshot(self, run_id: str, step: int, arrays: Mapping[str, np.ndarray]) -> None:
        rows = []
        for name, arr in arrays.items():
            a = np.ascontiguousarray(arr)
            rows.append((run_id, int(step), name, a.dtype.str, json.dumps(a.shape), a.tobytes()))
        with self._tx() as db:
            self._require(db, run_id)
            db.executemany("INSERT OR REPLACE INTO snapshots VALUES (?,?,?,?,?,?)", rows)

    def update_summary(
        self, run_id: str, summary: Mapping[str, Any], *, finished: bool = False
    ) -> None:
        now = time.time()
        with self._tx() as db:
            self._require(db, run_id)
            db.execute(
                "UPDATE runs SET summary=?, updated_at=?, "
                "finished_at=CASE WHEN ? THEN ? ELSE finished_at END WHERE run_id=?",
                (json.dumps(dict(summary), default=str), now, finished, now, run_id),
            )

    def _record(self, row: Sequence[Any]) -> RunRecord:
        return RunRecord(
            run_id=row[0],
            created_at=row[1],
            updated_at=row[2],
            finished_at=row[3],
            meta=json.loads(row[4]),
            summary=json.loads(row[5]),
            n_points=row[6],
        )

    _SELECT = (
        "SELECT r.run_id, r.created_at, r.updated_at, r.finished_at, r.meta, r.summary, "
        "(SELECT COUNT(*) FROM points p WHERE p.run_id = r.run_id) FROM runs r"
    )

    def get_run(self, run_id: str) -> RunRecord:
        with self._lock:
            row = self._db.execute(self._SELECT + " WHERE r.run_id=?", (run_id,)).fetchone()
        if row is None:
            raise UnknownRunError(run_id)
        return self._record(row)

    def list_runs(self) -> list[RunRecord]:
        with self._lock:
            rows = self._db.execute(self._SELECT + " ORDER BY r.created_at").fetchall()
        return [self._record(r) for r in rows]

    def points(self, run_id: str) -> list[tuple[int, dict[str, float]]]:
        with self._lock:
            self._require(self._db, run_id)
            rows = self._db.execute(
                'SELECT step, "values" FROM points WHERE run_id=? ORDER BY step', (run_id,)
            ).fetchall()
        return [(step, self._decode(raw, f"run {run_id!r} step {step}")) for step, raw in rows]

    def snapshots(self, run_id: str) -> dict[int, dict[str, np.ndarray]]:
        with self._lock:
            self._require(self._db, run_id)
            rows = self._db.execute(
                "SELECT step, name, dtype, shape, data FROM snapshots WHERE run_id=? ORDER BY step",
                (run_id,),
            ).fetchall()
        out: dict[int, dict[str, np.ndarray]] = {}
        for step, name, dtype, shape, data in rows:
            arr = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(json.loads(shape))
            out.setdefault(step, {})[name] = arr.copy()
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()


class MemoryStore(SQLiteStore):
    """The same store in memory: nothing touches disk (tests, throwaway runs)."""

    def __init__(self) -> None:
        super().__init__(":memory:")
