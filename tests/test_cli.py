from __future__ import annotations

import json
import threading
import time
import urllib.request

from _images import assert_is_a_plot
from test_metrics import free_port

from grokwatch import RunDetector, SQLiteStore
from grokwatch.cli import main
from grokwatch.events import outcome


def test_demo_writes_events_report_and_serves_metrics(tmp_path, capsys):
    """A short demo run (memorizes, does not yet grok) end to end, scraped while it trains."""
    port = free_port()
    scraped: list[str] = []
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set() and not scraped:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
                    text = r.read().decode()
                if "grokwatch_run_step{" in text:
                    scraped.append(text)
            except OSError:
                pass
            time.sleep(0.05)

    thread = threading.Thread(target=scrape)
    thread.start()
    out = tmp_path / "demo"
    try:
        code = main(
            ["demo", "--out", str(out), "--steps", "400", "--quiet", "--metrics-port", str(port)]
        )
    finally:
        done.set()
        thread.join()
    assert code == 0
    events = json.loads((out / "events.json").read_text())
    assert events["t_mem"] is not None
    assert events["budget"] == 400
    assert events["config"]["p"] == 53
    # the outcome is the detector's judgement of the stored evaluations within the budget
    store = SQLiteStore(out / "runs.db")
    judge = RunDetector(budget=events["budget"], forecaster=None)
    judge.update_many(store.points(events["run_id"]))
    store.close()
    assert (events["t_mem"], events["t_grok"]) == (judge.events.t_mem, judge.events.t_grok)
    assert events["outcome"] == judge.outcome().value
    assert events["outcome"] == outcome(events["t_mem"], events["t_grok"]).value
    assert_is_a_plot(out / "report.png")
    assert scraped, "the demo never served a run on /metrics"
    assert "grokwatch_run_test_accuracy_ratio" in scraped[0]
    printed = capsys.readouterr().out
    assert f"t_mem={events['t_mem']}" in printed
    assert "forecast timeline, alert at P(grok within budget) >= " in printed
    # events.json carries the agent's decision at every evaluation (every 100 steps here)
    assert [f["step"] for f in events["forecasts"]] == [1, 100, 200, 300, 400]
    assert all(0 <= f["p_grok_budget"] <= 1 for f in events["forecasts"])
    assert "first_alert_step" in events and "change_points" in events

    # the run is in the database: list it and re-plot it
    assert main(["runs", "--db", str(out / "runs.db")]) == 0
    listing = capsys.readouterr().out
    assert events["run_id"] in listing
    assert (
        main(
            [
                "report",
                events["run_id"],
                "--db",
                str(out / "runs.db"),
                "--out",
                str(tmp_path / "again.png"),
            ]
        )
        == 0
    )
    assert_is_a_plot(tmp_path / "again.png")


def test_report_of_unknown_run_is_a_clear_error(tmp_path, capsys):
    assert main(["report", "nope", "--db", str(tmp_path / "empty.db")]) == 2
    assert "no run database at" in capsys.readouterr().err


def _store_with_runs(path):
    """A run database with two runs registered a second apart: an older one that memorized
    and sits on its plateau, and a newer one with a single evaluation."""
    from grokwatch.store import SQLiteStore

    store = SQLiteStore(path)
    try:
        store.create_run("run-older", {"budget": 5000, "model": "MLP"})
        store.add_points(
            "run-older",
            [
                (s, {"train_accuracy": min(1.0, s / 400), "test_accuracy": 0.02 + s / 1e5})
                for s in range(100, 2100, 100)
            ],
        )
        time.sleep(1.1)
        store.create_run("run-newer", {"budget": 1000})
        store.add_points("run-newer", [(50, {"train_accuracy": 0.1, "test_accuracy": 0.01})])
    finally:
        store.close()


def test_runs_lists_the_database_newest_first_with_phase_and_forecast(tmp_path, capsys):
    db = tmp_path / "runs.db"
    _store_with_runs(db)
    assert main(["runs", "--db", str(db)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"2 run(s) in {db}, newest first"
    assert "started (UTC)" in out[1] and "latest forecast" in out[1]
    assert out[2].startswith("run-newer") and out[3].startswith("run-older")
    assert " plateau " in out[3]
    assert "P=" in out[3]  # the shipped forecaster's latest forecast


def test_show_prints_events_change_points_and_the_forecast_timeline(tmp_path, capsys):
    db = tmp_path / "runs.db"
    _store_with_runs(db)
    assert main(["show", "run-o", "--db", str(db), "--json", str(tmp_path / "t.json")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"run run-older in {db}")
    assert "events: t_mem=400 t_grok=None" in out
    assert "change points (" in out
    assert "forecast timeline, alert at P(grok within budget) >= " in out
    saved = json.loads((tmp_path / "t.json").read_text())
    assert [e["step"] for e in saved["forecasts"]] == list(range(100, 2100, 100))
    assert all(0 <= e["p_grok_budget"] <= 1 for e in saved["forecasts"])


def test_unknown_run_names_the_database_and_the_command_that_lists_it(tmp_path, capsys):
    db = tmp_path / "runs.db"
    _store_with_runs(db)
    for command in ("report", "show"):
        assert main([command, "f7ce7d8a29b9", "--db", str(db)]) == 2
        err = capsys.readouterr().err
        assert f"no run 'f7ce7d8a29b9' in {db} (2 run(s) there)" in err
        assert f"grokwatch runs --db {db}" in err
    assert main(["show", "run-", "--db", str(db)]) == 2  # a prefix of both ids
    assert "starts 2 run ids" in capsys.readouterr().err


def test_a_missing_database_is_named_and_not_created(tmp_path, capsys):
    db = tmp_path / "nowhere.db"
    for command in (["runs"], ["show", "x"], ["report", "x"]):
        assert main([*command, "--db", str(db)]) == 2
        err = capsys.readouterr().err
        assert f"no run database at {db} (--db)" in err
        assert "grokwatch demo --out DIR" in err
    assert not db.exists()


def test_help_imports_nothing_heavy():
    """``--help`` of the command and of every subcommand imports neither torch nor numpy,
    so it answers at once (timed in benchmarks/cli_help.py)."""
    import subprocess
    import sys

    from grokwatch.cli import build_parser

    names = next(a.choices for a in build_parser()._actions if hasattr(a, "choices") and a.choices)
    code = (
        "import sys\n"
        "from grokwatch.cli import main\n"
        "for argv in [['--help']] + [[n, '--help'] for n in sys.argv[1:]]:\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('torch', 'numpy', 'sklearn', 'matplotlib') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *names], capture_output=True, text=True, check=True
    )
    assert "usage: grokwatch show" in result.stdout
    assert result.stdout.strip().endswith("HEAVY []")


def test_import_grokwatch_defers_torch_until_a_name_is_used():
    import subprocess
    import sys

    code = (
        "import sys, grokwatch\n"
        "print('torch' in sys.modules)\n"
        "grokwatch.Agent\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
