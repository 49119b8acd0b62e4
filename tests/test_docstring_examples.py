"""The ``>>>`` examples in the package's docstrings run and print what they show (doctest)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

import grokwatch

ROOT = Path(grokwatch.__file__).parent


def _modules_with_examples() -> list[str]:
    names = []
    for path in sorted(ROOT.rglob("*.py")):
        if ">>>" in path.read_text():
            parts = path.relative_to(ROOT.parent).with_suffix("").parts
            names.append(".".join(p for p in parts if p != "__init__"))
    return names


def test_there_are_docstring_examples():
    assert "grokwatch.timeline" in _modules_with_examples()


@pytest.mark.parametrize("name", _modules_with_examples())
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
