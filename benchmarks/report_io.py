"""Writing a benchmark's result: the one JSON convention of ``benchmarks/results``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_report(path: Path | None, report: Mapping[str, Any]) -> None:
    """``report`` as indented JSON with a final newline at ``path`` (its folder made first);
    nothing when ``path`` is None (the benchmark's ``--json`` was not given)."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
