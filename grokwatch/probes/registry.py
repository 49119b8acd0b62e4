"""Built-in probes by name, and the runner that turns any failure into a reported status."""

from __future__ import annotations

import math
import traceback
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from grokwatch.exceptions import ConfigError, ProbeNotApplicable
from grokwatch.probes.base import Probe, ProbeContext, ProbeResult

#: name -> probe class; filled by each probe module at import (see ``grokwatch.probes``).
BUILTIN: dict[str, type[Probe]] = {}


def register(cls: type[Probe]) -> type[Probe]:
    """Class decorator adding a built-in probe under its ``name``."""
    if cls.name in BUILTIN:
        raise ConfigError(f"probe name {cls.name!r} is registered twice")
    BUILTIN[cls.name] = cls
    return cls


def resolve(probes: Iterable[str | Probe] | None) -> list[Probe]:
    """Probe instances for names or instances; ``None`` means every built-in with defaults."""
    if probes is None:
        return [cls() for cls in BUILTIN.values()]
    out: list[Probe] = []
    for item in probes:
        if isinstance(item, Probe):
            out.append(item)
        elif isinstance(item, str):
            if item not in BUILTIN:
                raise ConfigError(f"unknown probe name {item!r}; known: {sorted(BUILTIN)}")
            out.append(BUILTIN[item]())
        else:
            raise ConfigError(f"a probe must be a name or a Probe instance, got {item!r}")
    names = [p.name for p in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"probes listed twice: {dupes}")
    return out


def run_probe(probe: Probe, ctx: ProbeContext) -> ProbeResult:
    """Compute one probe under ``torch.no_grad()``; never raises.

    Non-finite values are kept and flagged. A value that cannot be read as a float is an error
    of the probe, reported like any other.
    """
    values: dict[str, float] = {}
    arrays: dict[str, np.ndarray] = {}
    try:
        with torch.no_grad():
            raw = probe.compute(ctx)
        for key, value in raw.items():
            if isinstance(value, np.ndarray):
                arrays[key] = value
            else:
                values[key] = float(value)
    except ProbeNotApplicable as exc:
        return ProbeResult(probe.name, "not_applicable", reason=str(exc))
    except Exception as exc:  # a broken probe must never reach the training loop
        return ProbeResult(
            probe.name,
            "error",
            reason=f"{type(exc).__name__}: {exc}",
            trace=traceback.format_exc(),
        )
    bad = sorted(k for k, v in values.items() if not math.isfinite(v))
    if bad:
        return ProbeResult(
            probe.name, "non_finite", values, arrays, reason=f"non-finite values: {bad}"
        )
    return ProbeResult(probe.name, "ok", values, arrays)


def run_probes(probes: Sequence[Probe], ctx: ProbeContext) -> list[ProbeResult]:
    return [run_probe(p, ctx) for p in probes]
