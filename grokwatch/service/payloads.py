"""Wire views of the run table: :class:`~grokwatch.service.live.LiveRun` to response models."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from grokwatch.service.live import Ingested, LiveRun
from grokwatch.store import RunRecord
from grokwatch.wire import (
    ChangePointOut,
    DecisionOut,
    EventsOut,
    IngestResult,
    RunInfo,
    RunState,
    wire_values,
)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _labels(meta: Mapping[str, Any]) -> dict[str, str]:
    raw = _dict(meta.get("labels"))
    return {str(k): v for k, v in raw.items() if isinstance(v, str)}


def _registration(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Registration fields of a stored ``meta`` (the service's layout, or an agent's own)."""
    hyper = meta.get("hyperparameters", meta.get("config"))
    known = {"task", "model", "hyperparameters", "config", "budget", "labels", "meta"}
    extra = meta["meta"] if isinstance(meta.get("meta"), Mapping) else None
    return {
        "task": _str_or_none(meta.get("task")),
        "model": _str_or_none(meta.get("model")),
        "labels": _labels(meta),
        "hyperparameters": _dict(hyper),
        "meta": dict(extra)
        if extra is not None
        else {k: v for k, v in meta.items() if k not in known},
    }


def info_of(record: RunRecord, run: LiveRun | None, *, live: bool) -> RunInfo:
    reg = _registration(record.meta)
    return RunInfo(
        run_id=record.run_id,
        created_at=record.created_at,
        updated_at=run.updated_at if run is not None else record.updated_at,
        finished_at=run.finished_at if run is not None else record.finished_at,
        live=live,
        n_points=run.n_points if run is not None else record.n_points,
        task=reg["task"],
        model=reg["model"],
        labels=reg["labels"],
    )


def state_of(run: LiveRun, *, live: bool) -> RunState:
    """The full state of a run (computes sharpness: O(history), for reads only)."""
    reg = _registration(run.meta)
    detector = run.detector
    measured = run.last_step is not None
    ev = detector.events
    sharpness = ev.sharpness if ev.sharpness is not None and math.isfinite(ev.sharpness) else None
    decision = DecisionOut.of(detector.decision)
    return RunState(
        run_id=run.run_id,
        created_at=run.created_at,
        updated_at=run.updated_at,
        finished_at=run.finished_at,
        live=live,
        n_points=run.n_points,
        task=reg["task"],
        model=reg["model"],
        labels=reg["labels"],
        hyperparameters=reg["hyperparameters"],
        budget=detector.budget,
        meta=reg["meta"],
        last_step=run.last_step,
        last_values=dict(wire_values(run.last_values)),
        phase=run.phase,
        outcome=detector.outcome().value if measured else None,
        events=EventsOut(t_mem=ev.t_mem, t_grok=ev.t_grok, gap=ev.gap, sharpness=sharpness),
        decision=decision,
        forecast=None if decision is None else decision.forecast,
        change_points=[ChangePointOut.of(cp) for cp in detector.change_points],
        summary=dict(run.summary),
    )


def ingest_result(done: Ingested) -> IngestResult:
    run = done.run
    return IngestResult.model_construct(
        run_id=run.run_id,
        accepted=done.accepted,
        duplicates=done.duplicates,
        last_step=done.last_step,
        phase=done.phase,
        decision=DecisionOut.of(done.decision),
    )
