"""How much each install of grokwatch puts on disk: the core, each extra, and ``dev``.

Reads the extras from ``pyproject.toml``, walks the requirement graph of the installed packages
(``importlib.metadata``: what an extra pulls in, and theirs, transitively) and adds up the files
each installed distribution lists in its RECORD. Reads the current environment, so run it where
every extra is installed; a requirement that is not installed is listed as missing, never
guessed.

    python benchmarks/install_size.py --json benchmarks/results/install_size.json
"""

from __future__ import annotations

import argparse
import json
import re
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import Requirement


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def _size(dist: metadata.Distribution) -> int:
    total = 0
    for f in dist.files or []:
        path = Path(str(dist.locate_file(f)))
        if path.is_file():
            total += path.stat().st_size
    return total


PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def roots(project: dict[str, Any], extras: set[str]) -> list[Requirement]:
    """grokwatch's own requirements with ``extras`` (``grokwatch[x]`` inside an extra expanded)."""
    out = [Requirement(t) for t in project["dependencies"]]
    todo, done = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in done:
            continue
        done.add(extra)
        for text in project["optional-dependencies"][extra]:
            req = Requirement(text)
            if _name(req.name) == "grokwatch":
                todo.extend(req.extras)
            else:
                out.append(req)
    return out


def closure(requirements: list[Requirement]) -> tuple[set[str], set[str]]:
    """Installed distributions the requirements need, transitively, and the missing ones."""
    seen: set[str] = set()
    missing: set[str] = set()
    env = default_environment()
    todo: list[tuple[str, frozenset[str]]] = [
        (_name(r.name), frozenset(r.extras))
        for r in requirements
        if r.marker is None or r.marker.evaluate(dict(env, extra=""))
    ]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in done:
            continue
        done.add((name, wanted))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.add(name)
            continue
        seen.add(name)
        for text in dist.requires or []:
            req = Requirement(text)
            envs = [dict(default_environment(), extra=e) for e in (wanted or {""})]
            if req.marker is not None and not any(req.marker.evaluate(env) for env in envs):
                continue
            todo.append((_name(req.name), frozenset(req.extras)))
    return seen, missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    extras = sorted(project["optional-dependencies"])
    rows = []
    for label, wanted in [("core", set()), *((e, {e}) for e in extras)]:
        names, missing = closure(roots(project, wanted))
        mb = sum(_size(metadata.distribution(n)) for n in names) / 1e6
        rows.append({"install": label, "packages": len(names), "mb": round(mb, 1),
                     "missing": sorted(missing)})  # fmt: skip
        print(f"{label:<12} {len(names):>4} packages {mb:>8.1f} MB  missing: {sorted(missing)}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2))


if __name__ == "__main__":
    main()
