"""The corpus on disk: one compressed file per run, written atomically, loaded as arrays.

Layout (format version 1)::

    DIR/corpus.json          manifest: format name and version, the specs that wrote runs here
                             (by name), the held-out ops/moduli, the probe cadence
    DIR/runs/<run_id>.npz    one finished run (status "ok" or "failed")

Why one file per run rather than one columnar table: a run becomes visible in a single
`os.replace` of a fully written, fsynced temporary file, so a sweep killed at any instant leaves
either the whole labelled run or nothing (a stray `.tmp` file, ignored and cleaned up); a
restarted sweep needs nothing but the directory listing to know what is done; workers never
contend for one file; and a run's measures can differ from another's (a model without an
embedding has no embedding probes) without a global schema. A run's file name is its id, a
hash of its resolved config (`trainer.spec.run_id_of`), so the same run can never be stored
twice. At ~1000 runs the directory stays small enough for git (tens of kB per run).

Each `.npz` (numpy's zip of arrays, `allow_pickle=False`) holds

- `format_version` — int, 0-d;
- `steps` — int64 `(T,)`, the evaluation steps (every `every` steps; the first at step 1);
- `columns` — str `(M,)`, the measure names (every probe value of `grokwatch.Agent.history`:
  `train_accuracy`, `test_accuracy`, `train_loss`, `test_loss`, `weight_norm`, ...);
- `values` — float32 `(T, M)`, NaN where a measure was not computed at that step (probes with
  a longer period, a probe not applicable to the model) or was not finite;
- `meta` — str, 0-d: JSON with `run_id`, `spec`, `family`, `split` ("train", "heldout",
  "eval"), `status`, `error`, `config` (the full resolved config; `config.steps` is the
  budget), `every`, `labels` (`outcome` within the budget, `t_mem`, `t_grok`, `gap`,
  `sharpness`, `budget`, all from the agent's own event tracker), `steps_run` (< budget when
  the run was stopped after `tail` × t_grok past generalization: its label cannot change),
  `wall_time`, `agent` (health counters and probe statuses) and `versions`.

`load(DIR)` returns a :class:`Corpus`; `Corpus.arrays()` pads the runs into one
`(R, T, M)` array. Unknown format versions are refused with :class:`CorpusFormatError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "grokwatch-corpus"
VERSION = 2  # what new sweeps with stacked training write; v1 sweeps still write 1
SUPPORTED_VERSIONS = (1, 2)
OUTCOMES = ("grokking", "comprehension", "memorization", "confusion")


V1_NOTE = (
    "corpus v1 is the single-family corpus of trainer/data/corpus_v1; corpus v2 (six families, "
    "stacked training) is trainer/data/corpus"
)


class CorpusFormatError(ValueError):
    """A corpus directory or run file this code cannot read (unknown version, bad file)."""


# -- one run ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
    """One stored run: its measures as arrays and its labels."""

    meta: Mapping[str, Any]
    steps: np.ndarray  # (T,) int64
    columns: tuple[str, ...]  # (M,)
    values: np.ndarray  # (T, M) float32, NaN = not measured

    @property
    def run_id(self) -> str:
        return str(self.meta["run_id"])

    @property
    def family(self) -> str:
        return str(self.meta["family"])

    @property
    def split(self) -> str:
        return str(self.meta["split"])

    @property
    def status(self) -> str:
        return str(self.meta["status"])

    @property
    def config(self) -> Mapping[str, Any]:
        return self.meta["config"]

    @property
    def labels(self) -> Mapping[str, Any]:
        return self.meta.get("labels") or {}

    @property
    def outcome(self) -> str | None:
        return self.labels.get("outcome")

    def series(self, name: str) -> np.ndarray:
        """The values of one measure, `(T,)` (all NaN if the run never measured it)."""
        if name not in self.columns:
            return np.full(len(self.steps), np.nan, dtype=np.float32)
        return self.values[:, self.columns.index(name)]


def run_path(directory: Path, run_id: str) -> Path:
    return Path(directory) / "runs" / f"{run_id}.npz"


def write_run(
    directory: str | Path,
    meta: Mapping[str, Any],
    steps: Sequence[int] | np.ndarray = (),
    columns: Sequence[str] = (),
    values: np.ndarray | None = None,
    *,
    version: int = 1,
) -> Path:
    """Write one run atomically: a temporary file in the same directory, fsync, rename."""
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"version must be one of {list(SUPPORTED_VERSIONS)}, got {version=}")
    directory = Path(directory)
    runs = directory / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    steps_arr = np.asarray(steps, dtype=np.int64).reshape(-1)  # (T,)
    if values is None:
        values = np.zeros((len(steps_arr), len(columns)), dtype=np.float32)
    values = np.asarray(values, dtype=np.float32)  # (T, M)
    if values.shape != (len(steps_arr), len(columns)):
        raise ValueError(
            f"values must be (steps, columns) = {(len(steps_arr), len(columns))}, "
            f"got {values.shape}"
        )
    meta = {**meta, "format_version": version}
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        format_version=np.array(version),
        steps=steps_arr,
        columns=np.array(list(columns), dtype=np.str_).reshape(-1),
        values=values,
        meta=np.array(json.dumps(meta, sort_keys=True, allow_nan=False)),
    )
    final = run_path(directory, str(meta["run_id"]))
    atomic_write(final, buf.getvalue())
    return final


def read_run(path: str | Path) -> Run:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            version = int(z["format_version"])
            if version not in SUPPORTED_VERSIONS:
                raise CorpusFormatError(
                    f"{path}: run format version {version} is not supported "
                    f"(this code reads {list(SUPPORTED_VERSIONS)}); upgrade grokwatch"
                )
            return Run(
                meta={**json.loads(str(z["meta"])), "format_version": version},
                steps=z["steps"],
                columns=tuple(str(c) for c in z["columns"]),
                values=z["values"],
            )
    except CorpusFormatError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise CorpusFormatError(f"{path}: not a readable corpus run file: {exc}") from exc


def finished_ids(directory: str | Path, *, include_failed: bool = True) -> set[str]:
    """Ids of the runs already stored (a restarted sweep skips them)."""
    runs = Path(directory) / "runs"
    if not runs.is_dir():
        return set()
    ids = {p.stem for p in runs.glob("*.npz")}
    if not include_failed:
        ids = {i for i in ids if read_run(run_path(Path(directory), i)).status == "ok"}
    return ids


def clean_temporaries(directory: str | Path) -> int:
    """Remove the `.tmp` files a killed writer left behind; returns how many."""
    runs = Path(directory) / "runs"
    stale = list(runs.glob(".*.tmp")) if runs.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


# -- the manifest ----------------------------------------------------------------------------


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / "corpus.json"
    if not path.exists():
        raise CorpusFormatError(f"{directory}: no corpus.json (not a corpus directory)")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise CorpusFormatError(f"{path}: format is {manifest.get('format')!r}, not {FORMAT!r}")
    version = manifest.get("version")
    if version not in SUPPORTED_VERSIONS:
        raise CorpusFormatError(
            f"{path}: corpus format version {version!r} is not supported "
            f"(this code reads {list(SUPPORTED_VERSIONS)}); upgrade grokwatch"
        )
    return manifest


def register_spec(
    directory: str | Path, spec: Mapping[str, Any], role: str, *, version: int = 1
) -> dict[str, Any]:
    """Create the manifest or add/replace the spec's entry (by name); returns the manifest.

    Replacing is safe: run ids are content hashes, so runs of the old and the new version of
    a spec never collide, and a grown random spec (larger n_runs, same seed) reuses every
    run drawn before.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "corpus.json").exists():
        manifest = read_manifest(directory)
        if manifest["version"] != version:
            raise CorpusFormatError(
                f"{directory} holds a version-{manifest['version']} corpus; a version-{version} "
                "sweep must write to a directory of its own"
            )
    else:
        manifest = {"format": FORMAT, "version": version, "specs": {}, "holdout": {}}
    manifest["specs"][spec["name"]] = {"role": role, **spec}
    for key, values in (spec.get("holdout") or {}).items():
        merged = manifest["holdout"].setdefault(key, [])
        merged.extend(v for v in values if v not in merged)
    atomic_write(directory / "corpus.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


# -- the whole corpus ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Corpus:
    """Runs loaded from a corpus directory (see :func:`load`)."""

    manifest: Mapping[str, Any]
    runs: tuple[Run, ...]

    def __len__(self) -> int:
        return len(self.runs)

    @property
    def version(self) -> int:
        """The corpus format version (1 or 2)."""
        return int(self.manifest["version"])

    def __iter__(self) -> Iterator[Run]:
        return iter(self.runs)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every measure any run has, sorted."""
        return tuple(sorted({c for r in self.runs for c in r.columns}))

    def labels(self) -> np.ndarray:
        """Outcome of each run, `(R,)` str ("" for a failed run)."""
        return np.array([r.outcome or "" for r in self.runs], dtype=np.str_)

    def label_table(self) -> dict[str, np.ndarray]:
        """Every label as an array `(R,)`: outcome, t_mem, t_grok, gap, sharpness, budget
        (NaN where an event did not happen), plus family and split."""
        out: dict[str, np.ndarray] = {
            "run_id": np.array([r.run_id for r in self.runs], dtype=np.str_),
            "family": np.array([r.family for r in self.runs], dtype=np.str_),
            "split": np.array([r.split for r in self.runs], dtype=np.str_),
            "outcome": self.labels(),
        }
        for key in ("t_mem", "t_grok", "gap", "sharpness", "budget"):
            out[key] = np.array(
                [np.nan if r.labels.get(key) is None else r.labels[key] for r in self.runs],
                dtype=float,
            )
        return out

    def arrays(
        self, columns: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`(values, steps, lengths)`: values `(R, T, M)` float32 NaN-padded after each run's
        end, steps `(R, T)` int64 padded with −1, lengths `(R,)`; T is the longest run."""
        columns = tuple(columns) if columns is not None else self.columns
        t_max = max((len(r.steps) for r in self.runs), default=0)
        values = np.full((len(self.runs), t_max, len(columns)), np.nan, dtype=np.float32)
        steps = np.full((len(self.runs), t_max), -1, dtype=np.int64)
        lengths = np.array([len(r.steps) for r in self.runs], dtype=np.int64)
        for i, run in enumerate(self.runs):
            t = len(run.steps)
            steps[i, :t] = run.steps
            index = {c: j for j, c in enumerate(run.columns)}
            for m, name in enumerate(columns):
                if name in index:
                    values[i, :t, m] = run.values[:, index[name]]
        return values, steps, lengths

    def select(self, **where: str | Iterable[str]) -> Corpus:
        """The runs whose meta fields match, e.g. `select(family="mlp", split="train")`."""

        def ok(run: Run) -> bool:
            for key, want in where.items():
                allowed = {want} if isinstance(want, str) else set(want)
                if str(run.meta.get(key)) not in allowed:
                    return False
            return True

        return Corpus(self.manifest, tuple(r for r in self.runs if ok(r)))

    def counts(self) -> dict[str, Counter[str]]:
        """family → Counter of outcomes ("failed" for failed runs)."""
        table: dict[str, Counter[str]] = {}
        for run in self.runs:
            key = run.outcome if run.status == "ok" else "failed"
            table.setdefault(run.family, Counter())[key or "failed"] += 1
        return table


def load(
    directory: str | Path,
    *,
    family: str | Iterable[str] | None = None,
    split: str | Iterable[str] | None = None,
    include_failed: bool = False,
    version: int | None = None,
) -> Corpus:
    """Read a corpus directory: every finished run (failed ones only if asked), sorted by id.

    Both format versions are read (`Corpus.version` says which one it is); `version=2`
    refuses anything else with a message that says where the v2 corpus is.

    Raises :class:`CorpusFormatError` for a missing/unknown manifest or an unknown run version.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    if version is not None and manifest["version"] != version:
        raise CorpusFormatError(
            f"{directory} is a version-{manifest['version']} corpus, version {version} was asked "
            f"for ({V1_NOTE if manifest['version'] == 1 else 'see docs/corpus.md'})"
        )
    runs = [read_run(p) for p in sorted((directory / "runs").glob("*.npz"))]
    mixed = sorted({int(r.meta.get("format_version", 1)) for r in runs} - {manifest["version"]})
    if mixed:
        raise CorpusFormatError(
            f"{directory}: manifest says version {manifest['version']} but runs of version "
            f"{mixed} are in it; one directory holds one corpus version"
        )
    corpus = Corpus(manifest, tuple(r for r in runs if include_failed or r.status == "ok"))
    where: dict[str, Any] = {}
    if family is not None:
        where["family"] = family
    if split is not None:
        where["split"] = split
    return corpus.select(**where) if where else corpus


def atomic_write(final: Path, data: bytes) -> None:
    """Write `data` to `final` so that readers see the old file or the new one, never a mix."""
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
