from __future__ import annotations

import math
import sqlite3
import struct

import numpy as np
import pytest

from grokwatch import MemoryStore, SchemaError, SQLiteStore, StoreError, UnknownRunError


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    s = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "runs.db")
    yield s
    s.close()


def test_round_trip_with_nonfinite_values_and_idempotent_points(store):
    assert store.create_run("r1", {"config": {"p": 53}})
    assert not store.create_run("r1", {"config": {"p": 97}})  # kept, not overwritten
    pts = [(0, {"a": 1.0, "b": math.nan}), (100, {"a": math.inf, "b": -math.inf})]
    assert store.add_points("r1", pts) == 2
    assert store.add_points("r1", [(100, {"a": 5.0}), (50, {"a": 2.0})]) == 1  # dup + late
    got = store.points("r1")
    assert [s for s, _ in got] == [0, 50, 100]
    assert math.isnan(got[0][1]["b"]) and got[2][1] == {"a": math.inf, "b": -math.inf}
    store.add_snapshot("r1", 100, {"m": np.arange(6, dtype=np.float32).reshape(2, 3)})
    snap = store.snapshots("r1")[100]["m"]
    assert snap.dtype == np.float32 and snap.tolist() == [[0, 1, 2], [3, 4, 5]]
    store.update_summary("r1", {"outcome": "grokking"}, finished=True)
    rec = store.get_run("r1")
    assert rec.meta == {"config": {"p": 53}} and rec.summary == {"outcome": "grokking"}
    assert rec.finished_at is not None and rec.n_points == 3
    assert [r.run_id for r in store.list_runs()] == ["r1"]


def test_unknown_run(store):
    with pytest.raises(UnknownRunError):
        store.get_run("nope")
    with pytest.raises(UnknownRunError):
        store.add_points("nope", [(0, {"a": 1.0})])


def test_reopen_keeps_everything(tmp_path):
    path = tmp_path / "runs.db"
    s = SQLiteStore(path)
    s.create_run("r", {})
    s.add_points("r", [(i, {"x": float(i)}) for i in range(10)])
    s.close()
    s2 = SQLiteStore(path)
    assert len(s2.points("r")) == 10
    s2.close()


def test_refuses_unknown_schema_version(tmp_path):
    path = tmp_path / "future.db"
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version=99")
    con.close()
    with pytest.raises(SchemaError, match="schema version 99"):
        SQLiteStore(path)


def test_points_of_several_runs_in_one_transaction(store):
    store.create_run("a", {})
    store.create_run("b", {})
    batches = [
        ("a", [(0, {"x": 1.0}), (1, {"x": 2.0})]),
        ("b", [(0, {"y": math.nan})]),
        ("a", [(1, {"x": 9.0}), (2, {"x": 3.0})]),  # the same run again: 1 is a duplicate
    ]
    assert store.add_points_many(batches) == [2, 1, 1]
    assert store.points("a") == [(0, {"x": 1.0}), (1, {"x": 2.0}), (2, {"x": 3.0})]
    assert math.isnan(store.points("b")[0][1]["y"])
    with pytest.raises(UnknownRunError):
        store.add_points_many([("a", [(5, {"x": 1.0})]), ("nope", [(0, {"x": 1.0})])])
    assert [s for s, _ in store.points("a")] == [0, 1, 2]  # all or nothing
    assert store.get_run("a").n_points == 3


def test_values_round_trip_through_the_binary_record(store):
    store.create_run("r", {})
    odd = {
        'täst "quoted"\x00,name': -0.0,
        "n": math.nan,
        "i": math.inf,
        "m": -math.inf,
        "f32": np.float32(0.25),
        "int": 3,
        "tiny": 5e-324,
    }
    store.add_points("r", [(7, odd), (8, {}), (9, {"x": 1e308})])
    (_, got), (_, empty), (_, big) = store.points("r")
    assert list(got) == list(odd)
    assert math.copysign(1.0, got['täst "quoted"\x00,name']) == -1.0
    assert math.isnan(got["n"]) and got["i"] == math.inf and got["m"] == -math.inf
    assert (got["f32"], got["int"], got["tiny"]) == (0.25, 3.0, 5e-324)
    assert all(type(v) is float for v in got.values())
    assert empty == {} and big == {"x": 1e308}
    with pytest.raises(TypeError):
        store.add_points("r", [(10, {"x": None})])


def test_a_version_1_database_is_upgraded_in_place(tmp_path):
    """Version 1 kept values as JSON text; those rows are read as they are."""
    path = tmp_path / "v1.db"
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, created_at REAL NOT NULL,"
        " updated_at REAL NOT NULL, finished_at REAL, meta TEXT NOT NULL,"
        " summary TEXT NOT NULL DEFAULT '{}');"
        'CREATE TABLE points (run_id TEXT NOT NULL, step INTEGER NOT NULL, "values" TEXT'
        " NOT NULL, PRIMARY KEY (run_id, step)) WITHOUT ROWID;"
        "INSERT INTO runs VALUES ('r', 1.0, 1.0, NULL, '{}', '{}');"
        """INSERT INTO points VALUES ('r', 0, '{"a":0.5,"b":"nan","c":"-inf"}');"""
        "PRAGMA user_version=1;"
    )
    con.close()
    s = SQLiteStore(path)
    assert s.add_points("r", [(0, {"a": 9.0}), (1, {"a": 1.5})]) == 1
    (s0, v0), (s1, v1) = s.points("r")
    assert (s0, v0["a"], v0["c"], s1, v1) == (0, 0.5, -math.inf, 1, {"a": 1.5})
    assert math.isnan(v0["b"])
    s.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone() == (3,)
    con.close()


def test_a_version_2_database_is_upgraded_in_place(tmp_path):
    """Version 2 wrote the measure names into every record; those rows are read as they are,
    and new rows store the names once."""
    path = tmp_path / "v2.db"
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, created_at REAL NOT NULL,"
        " updated_at REAL NOT NULL, finished_at REAL, meta TEXT NOT NULL,"
        " summary TEXT NOT NULL DEFAULT '{}');"
        'CREATE TABLE points (run_id TEXT NOT NULL, step INTEGER NOT NULL, "values" BLOB'
        " NOT NULL, PRIMARY KEY (run_id, step)) WITHOUT ROWID;"
        "INSERT INTO runs VALUES ('r', 1.0, 1.0, NULL, '{}', '{}');"
        "PRAGMA user_version=2;"
    )
    record = b'["a","b"]\x00' + struct.pack("<2d", 0.5, -math.inf)
    con.execute("INSERT INTO points VALUES ('r', 0, ?)", (record,))
    con.commit()
    con.close()
    s = SQLiteStore(path)
    assert s.add_points("r", [(0, {"a": 9.0}), (1, {"a": 1.5, "b": 2.0})]) == 1
    assert s.points("r") == [(0, {"a": 0.5, "b": -math.inf}), (1, {"a": 1.5, "b": 2.0})]
    s.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone() == (3,)
    (new,) = con.execute('SELECT "values" FROM points WHERE step=1').fetchone()
    assert len(new) == 5 + 16  # marker, measure-set id, two float64s: no names
    con.close()


def test_a_reader_sees_measure_sets_another_process_registered(tmp_path):
    path = tmp_path / "shared.db"
    writer, reader = SQLiteStore(path), SQLiteStore(path)
    writer.create_run("r", {})
    writer.add_points("r", [(0, {"x": 1.0})])
    assert reader.points("r") == [(0, {"x": 1.0})]
    writer.add_points("r", [(1, {"y": 2.0, "z": math.inf})])  # a set the reader never saw
    assert reader.points("r") == [(0, {"x": 1.0}), (1, {"y": 2.0, "z": math.inf})]
    writer.close()
    reader.close()


def test_a_refused_batch_registers_no_measure_set(tmp_path):
    s = SQLiteStore(tmp_path / "r.db")
    s.create_run("r", {})
    with pytest.raises(TypeError):  # the second point's value is not a number: all or nothing
        s.add_points("r", [(0, {"fresh": 1.0}), (1, {"fresh": None})])
    assert s.points("r") == [] and s._prefixes == {}
    con = sqlite3.connect(tmp_path / "r.db")
    assert con.execute("SELECT COUNT(*) FROM measure_sets").fetchone() == (0,)
    con.close()
    s.close()


def test_past_the_cap_a_record_carries_its_names(tmp_path, monkeypatch):
    monkeypatch.setattr("grokwatch.store.MAX_MEASURE_SETS", 3)
    s = SQLiteStore(tmp_path / "cap.db")
    s.create_run("r", {})
    pts = [(i, {f"m{i}": float(i), "x": -math.inf}) for i in range(10)]
    assert s.add_points("r", pts) == 10
    assert s.points("r") == pts  # every record reads back, registered set or inline names
    assert len(s._prefixes) == 3
    s.close()


def test_a_record_of_an_unknown_measure_set_is_a_clear_store_error(tmp_path):
    path = tmp_path / "bad.db"
    s = SQLiteStore(path)
    s.create_run("r", {})
    s.add_points("r", [(0, {"x": 1.0})])
    con = sqlite3.connect(path)
    con.execute(
        """UPDATE points SET "values"=? WHERE step=0""",
        (b"\x01" + struct.pack("<I", 777) + struct.pack("<d", 1.0),),
    )
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="run 'r' step 0: unknown measure set 777"):
        s.points("r")
    s.close()
