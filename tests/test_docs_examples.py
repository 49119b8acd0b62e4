"""Every Python example in the README and the documentation pages runs, so none can rot.

Each ```python block of ``README.md`` and ``docs/*.md`` runs in a fresh interpreter from the
repository root (one torch thread, a private ``GROKWATCH_HOME``). A block that is a fragment
(it uses the reader's own model, or a running service) is preceded by a line
``<!-- example: not run: REASON -->`` and is reported as skipped with that reason. When a block
is followed by "prints" and a ```text block, the output must match it line by line, with the
numbers masked except the steps (the last digits of a probability may differ between machines;
the phases, steps and decisions may not).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
NOT_RUN = re.compile(r"<!-- example: not run: (.+?) -->\s*$")


def _examples() -> list[pytest.param]:
    params = []
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text()
        blocks = list(FENCE.finditer(text))
        for i, block in enumerate(blocks):
            if block.group(1) != "python":
                continue
            line = text.count("\n", 0, block.start()) + 1
            before = text[: block.start()].rstrip("\n").rsplit("\n", 1)[-1]
            expected = None
            following = blocks[i + 1] if i + 1 < len(blocks) else None
            if following is not None and following.group(1) == "text":
                between = text[block.end() : following.start()]
                if between.strip().startswith("prints"):
                    expected = following.group(2)
            marks = []
            skip = NOT_RUN.search(before)
            if skip:
                marks.append(pytest.mark.skip(reason=f"not run: {skip.group(1)}"))
            params.append(
                pytest.param(
                    block.group(2),
                    expected,
                    id=f"{page.relative_to(ROOT)}:{line}",
                    marks=marks,
                )
            )
    return params


def _masked(text: str) -> list[str]:
    number = re.compile(r"(?<!step )(?<![\w.])\d+(\.\d+)?")
    return [number.sub("#", line.rstrip()) for line in text.strip().splitlines()]


@pytest.mark.parametrize(("code", "expected"), _examples())
def test_example_runs(code: str, expected: str | None, tmp_path: Path) -> None:
    env = dict(
        os.environ,
        GROKWATCH_HOME=str(tmp_path),
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(ROOT),
    )
    env.pop("GROKWATCH_DB", None)
    env.pop("GROKWATCH_DETECTOR", None)
    prelude = "import torch; torch.set_num_threads(1)\n"
    result = subprocess.run(
        [sys.executable, "-c", prelude + code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    if expected is not None:
        assert _masked(result.stdout) == _masked(expected)


def test_the_readme_has_a_checked_example() -> None:
    """The README's loop example runs with its printed output compared (not skipped)."""
    readme = [p for p in _examples() if str(p.id).startswith("README.md:")]
    assert readme, "the README has no Python example"
    assert any(p.values[1] is not None and not p.marks for p in readme)


def test_the_readme_agent_fits_in_ten_lines() -> None:
    """From ``with grokwatch.Agent(...)`` to the end of its example, run control included."""
    text = (ROOT / "README.md").read_text()
    block = next(m.group(2) for m in FENCE.finditer(text) if "grokwatch.Agent(" in m.group(2))
    lines = block[block.index("with grokwatch.Agent(") :].strip().splitlines()
    assert len(lines) <= 10, "\n".join(lines)
