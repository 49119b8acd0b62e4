"""MkDocs hooks: benchmark tables from the committed JSON, figures from the repository.

- A line ``<!-- table: NAME -->`` in a page is replaced by ``benchmarks/doc_tables.render(NAME)``
  (the tables are generated at every build, never typed).
- The committed figures under ``benchmarks/results/`` and ``trainer/data/`` are added to the site
  as ``results/...`` and ``trainer-data/...``, so pages link to them without copies in ``docs/``.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^<!-- table: ([a-z_]+) -->$", re.MULTILINE)
FIGURES = {"results": ROOT / "benchmarks" / "results", "trainer-data": ROOT / "trainer" / "data"}


def _doc_tables() -> Any:
    spec = importlib.util.spec_from_file_location(
        "_doc_tables", ROOT / "benchmarks" / "doc_tables.py"
    )
    if spec is None or spec.loader is None:
        raise ImportError("benchmarks/doc_tables.py not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_files(files: Files, config: Any) -> Files:
    for prefix, directory in FIGURES.items():
        for path in sorted(directory.rglob("*.png")):
            uri = f"{prefix}/{path.relative_to(directory).as_posix()}"
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    if "<!-- table:" not in markdown:
        return markdown
    tables = _doc_tables()
    return MARKER.sub(lambda m: str(tables.render(m.group(1))), markdown)


def _drop_missing(nav: list[Any], docs_dir: Path) -> list[Any]:
    """The navigation without the pages whose file is not (yet) in ``docs/``."""
    kept: list[Any] = []
    for item in nav:
        if isinstance(item, dict):
            ((title, target),) = item.items()
            if isinstance(target, list):
                target = _drop_missing(target, docs_dir)
                if target:
                    kept.append({title: target})
            elif "://" in str(target) or (docs_dir / str(target)).exists():
                kept.append(item)
        elif "://" in str(item) or (docs_dir / str(item)).exists():
            kept.append(item)
    return kept


def on_config(config: Any) -> Any:
    config["nav"] = _drop_missing(config["nav"], Path(config["docs_dir"]))
    return config
