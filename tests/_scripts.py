"""A repository script that is not in a package (``benchmarks/``, ``deploy/``), loaded as a
module by its path, for the tests of its functions."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative: str | Path, name: str | None = None) -> ModuleType:
    """The module of ``ROOT / relative`` (named ``name``, by default its file's stem)."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
