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
    assert "nope" in capsys.readouterr().err
