"""Every script in ``examples/`` runs from a fresh interpreter and prints what it promises.

Each example must have an entry in ``EXPECTED``: a new example without one fails here, so none
goes untested. Examples run from the repository root with one torch thread and a private
``GROKWATCH_HOME``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))

EXPECTED: dict[str, list[str]] = {
    "plain_loop.py": [
        r"^continue: phase grokking at step 1500; will grok: P\(grok within budget\)=0\.\d\d",
        r"^outcome grokking: t_mem=\d+ t_grok=1600 gap=\d+$",
    ],
    "detector_service.py": [
        r"^grokwatch serve on http://127\.0\.0\.1:\d+$",
        r"^the service holds 16 evaluations of \w+: phase grokking, t_grok=None, "
        r"P\(grok within budget\)=0\.\d\d$",
        r'^grokwatch_run_step\{run_id="\w+"\} 1500\.0$',
    ],
    "monitoring_stack.py": [
        r"^grokwatch serve on http://127\.0\.0\.1:\d+, Prometheus on http://127\.0\.0\.1:\d+$",
        r"^Prometheus: highest P\(grok within budget\) of \w+: 1\.00; grok alert raised: yes$",
        r"^alert RunGrokked: firing$",
    ],
}


def test_every_example_is_checked():
    assert {p.name for p in EXAMPLES} == set(EXPECTED)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example(path: Path, tmp_path: Path) -> None:
    env = dict(os.environ, GROKWATCH_HOME=str(tmp_path), OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    for name in ("GROKWATCH_DB", "GROKWATCH_DETECTOR", "GROKWATCH_TOKEN"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    for pattern in EXPECTED[path.name]:
        assert any(re.search(pattern, line) for line in lines), (pattern, result.stdout)
