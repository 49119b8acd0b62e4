from __future__ import annotations

import json
import threading
import time
import urllib.request

from test_metrics import free_port

from grokwatch.cli import main


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
    assert events["outcome"] in {"memorization", "grokking", "comprehension"}
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
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
    assert (tmp_path / "again.png").stat().st_size > 10_000


def test_report_of_unknown_run_is_a_clear_error(tmp_path, capsys):
    assert main(["report", "nope", "--db", str(tmp_path / "empty.db")]) == 2
    assert "nope" in capsys.readouterr().err
