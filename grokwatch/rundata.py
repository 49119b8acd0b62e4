"""A run's recorded data, from a live agent's memory or read back from a store."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from grokwatch.store import Store


@dataclasses.dataclass(frozen=True)
class RunData:
    """Everything needed to report on a run, from an agent's memory or from a store."""

    run_id: str
    meta: Mapping[str, Any]
    summary: Mapping[str, Any]
    points: Sequence[tuple[int, Mapping[str, float]]]
    snapshots: Mapping[int, Mapping[str, np.ndarray]]

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Steps and values of one measure (steps where it is missing are skipped)."""
        pairs = [(s, v[name]) for s, v in self.points if name in v]
        if not pairs:
            return np.empty(0, dtype=np.int64), np.empty(0)
        steps, vals = zip(*pairs, strict=True)
        return np.asarray(steps, dtype=np.int64), np.asarray(vals, dtype=float)


def load_run(store: Store, run_id: str) -> RunData:
    """A stored run as :class:`RunData` (raises ``UnknownRunError`` for an unknown id)."""
    rec = store.get_run(run_id)
    return RunData(
        run_id=run_id,
        meta=rec.meta,
        summary=rec.summary,
        points=store.points(run_id),
        snapshots=store.snapshots(run_id),
    )
