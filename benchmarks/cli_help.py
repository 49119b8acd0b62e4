"""How long ``grokwatch --help`` and every subcommand's ``--help`` take, beside ``python -c pass``.

Each command runs in a fresh interpreter (``python -m grokwatch.cli ...``, what the installed
``grokwatch`` script runs), ``--repeats`` times, interleaved with the baseline so a busy machine
slows both alike. The target is 0.5 s per command; "over the baseline" is what grokwatch adds
to starting Python. The subcommands are read from the parser itself, so a new one is timed too.

    python benchmarks/cli_help.py --repeats 10 --json benchmarks/results/cli_help.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from grokwatch.cli import build_parser

TARGET_S = 0.5


def subcommands() -> list[str]:
    parser = build_parser()
    for action in parser._actions:  # argparse keeps the subparsers here
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    py = sys.executable
    commands = {
        "python -c pass": [py, "-c", "pass"],
        "grokwatch --help": [py, "-m", "grokwatch.cli", "--help"],
    }
    for name in subcommands():
        commands[f"grokwatch {name} --help"] = [py, "-m", "grokwatch.cli", name, "--help"]
    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, argv in commands.items():
            times[name].append(timed(argv))

    def stats(name: str) -> dict[str, object]:
        t = times[name]
        return {"command": name, "median_s": statistics.median(t), "max_s": max(t), "times_s": t}

    result = {
        "machine": f"{platform.machine()} CPython {platform.python_version()}",
        "repeats": args.repeats,
        "target_s": TARGET_S,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "baseline": stats("python -c pass"),
        "commands": [stats(name) for name in commands if name != "python -c pass"],
    }
    for row in [result["baseline"], *result["commands"]]:
        print(f"{row['command']:<32} median {row['median_s']:.3f} s  max {row['max_s']:.3f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
