"""The service speed tables of docs/benchmarks.md, from the JSON the service benchmarks wrote.

Reads every ``ingest_*.json``, ``metrics_*.json`` and ``memory_*.json`` in a directory
(``benchmarks/results/service`` by default, written by the commands in docs/benchmarks.md,
*The detector service*) and prints the markdown tables. Given several directories (runs of two
versions of the code, side by side), every row starts with its directory's name.

    python benchmarks/service_tables.py [DIR ...]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

DIRS: list[Path] = []
"""The directories read; with more than one, each row is labelled with its directory's name
(or its entry in :data:`LABELS`)."""
LABELS: dict[Path, str] = {}


def _load(directory: Path, pattern: str) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for path in sorted(directory.glob(pattern)):
        for entry in json.loads(path.read_text()):
            rows.append((path.stem, entry))
    return rows


def _label(head: Sequence[str], rows: Iterable[Sequence[Any]], where: Path) -> tuple[Any, Any]:
    if len(DIRS) < 2:
        return head, rows
    return ("code", *head), [(LABELS.get(where, where.name), *row) for row in rows]


def _n(x: float) -> str:
    return f"{round(x):,}".replace(",", " ")


def _ms(x: float) -> str:
    return f"{x / 1e3:.1f} s" if x >= 1000 else f"{x:.3g} ms"


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table: the header, its rule, one line a row."""
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _rows(directory: Path, head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """The table, without its header when it continues the first directory's."""
    head, rows = _label(head, rows, directory)
    lines = _table(head, rows).split("\n")
    return "\n".join(lines if directory == DIRS[0] else lines[2:])


def throughput(directory: Path) -> str:
    rows = [e for _, e in _load(directory, "ingest_*.json") if e["scenario"] == "throughput"]
    rows.sort(key=lambda e: (e["forecaster"] != "none", e.get("replicas", 1), e["batch"]))
    return _rows(
        directory,
        ("forecaster", "replicas", "points / request", "requests/s", "points/s", "p50", "p99",
         "server CPU (cores)"),
        ((e["forecaster"], e.get("replicas", 1), e["batch"], _n(e["requests_per_s"]),
          _n(e["points_per_s"]), _ms(e["p50_ms"]), _ms(e["p99_ms"]),
          f"{e['server_cpu_cores']:.2f}") for e in rows),
    )  # fmt: skip


def _lag(e: dict[str, Any]) -> str:
    if not e.get("forecasts_lagged"):
        return "—"
    bounds = (e.get("forecast_lag_p50_ms_at_most"), e.get("forecast_lag_p99_ms_at_most"))
    return " / ".join("> 30 s" if b is None else f"≤ {_ms(b)}" for b in bounds)


def live(directory: Path) -> str:
    rows = [e for _, e in _load(directory, "ingest_*.json") if e["scenario"] == "live"]
    rows.sort(
        key=lambda e: (
            e["forecaster"] != "none",
            e["report_points"],
            e["runs"],
            e.get("replicas", 1),
        )
    )

    def cells(e: dict[str, Any]) -> tuple[Any, ...]:
        return (e["forecaster"], e.get("replicas", 1), f"{e['runs']} × {e['report_points']}",
                f"{_n(e['requests_per_s'])} of {e['runs']}", _ms(e["p50_ms"]),
                _ms(e["p99_ms"]),
                _ms(e["p99_ms_after_warmup"]) if "p99_ms_after_warmup" in e else "—",
                _lag(e), e.get("forecast_backlog_runs_at_end", "—"),
                f"{e['server_cpu_cores']:.2f}")  # fmt: skip

    return _rows(
        directory,
        ("forecaster", "replicas", "live runs × points per report", "served req/s", "p50",
         "p99", "p99 after the warm-up", "forecast lag p50 / p99",
         "forecasts waiting at the end", "server CPU (cores)"),
        (cells(e) for e in rows),
    )  # fmt: skip


def metrics(directory: Path) -> str:
    by_file: dict[str, list[dict[str, Any]]] = {}
    for stem, e in _load(directory, "metrics_*.json"):
        by_file.setdefault(stem.removeprefix("metrics_"), []).append(e)
    rows = []
    for forecaster, entries in sorted(by_file.items(), key=lambda kv: kv[0] != "none"):
        local = [e for e in entries if e["where"] == "in-process"]
        remote = [e for e in entries if e["where"] == "http"]
        for a, b in zip(local, remote, strict=True):
            rows.append((forecaster, a["runs"], _n(a["series"]), _ms(a["render_ms_median"]),
                         _ms(b["get_ms_median"])))  # fmt: skip
    return _rows(directory, ("forecaster", "live runs", "series", "in-process", "HTTP"), rows)


def memory(directory: Path) -> str:
    rows = [e for _, e in _load(directory, "memory_*.json")]
    rows.sort(key=lambda e: (e["forecaster"] != "none", e["points_per_run"]))
    return _rows(
        directory,
        ("forecaster", "evaluations per run", "MB per 1000 live runs"),
        ((e["forecaster"], e["points_per_run"], e["mb_per_1000_runs"]) for e in rows),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir", nargs="*", type=Path, default=[Path("benchmarks/results/service")])
    args = parser.parse_args()
    DIRS.extend(args.dir)
    for title, render in (
        ("Ingest, closed loop", throughput),
        ("Live runs, open loop", live),
        ("/metrics render time (median)", metrics),
        ("Memory per live run", memory),
    ):
        parts = [render(d) for d in DIRS]
        print(f"{title}:\n\n" + "\n".join(p for p in parts if p) + "\n")


if __name__ == "__main__":
    main()
