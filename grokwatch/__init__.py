"""grokwatch: early warning for grokking in PyTorch training runs.

The public facade: :class:`Agent` for training loops, the typed :class:`Decision` it returns,
the :class:`Probe` extension point, the stores and transports runs are kept in, and the
:class:`GrokForecaster` that forecasts grokking (with its null and constant stand-ins), and the
opt-in :class:`RunPolicy` that turns decisions into stop/extend advice.

Names are imported on first use (PEP 562), so ``import grokwatch`` and the ``grokwatch`` command's
``--help`` do not pay for torch, scikit-learn and the forecaster until a name is needed.
"""

import importlib as _importlib
import typing as _typing

__version__ = "0.1.0"

_EXPORTS: dict[str, tuple[str, str]] = {
    "Agent": ("grokwatch.agent", "Agent"),
    "Action": ("grokwatch.decision", "Action"),
    "ChangePoint": ("grokwatch.decision", "ChangePoint"),
    "Decision": ("grokwatch.decision", "Decision"),
    "Direction": ("grokwatch.decision", "Direction"),
    "Forecast": ("grokwatch.decision", "Forecast"),
    "ForecastReason": ("grokwatch.decision", "ForecastReason"),
    "Phase": ("grokwatch.decision", "Phase"),
    "Reason": ("grokwatch.decision", "Reason"),
    "RunDetector": ("grokwatch.detector", "RunDetector"),
    "EventRules": ("grokwatch.events", "EventRules"),
    "Events": ("grokwatch.events", "Events"),
    "Outcome": ("grokwatch.events", "Outcome"),
    "ConfigError": ("grokwatch.exceptions", "ConfigError"),
    "GrokwatchError": ("grokwatch.exceptions", "GrokwatchError"),
    "ProbeNotApplicable": ("grokwatch.exceptions", "ProbeNotApplicable"),
    "SchemaError": ("grokwatch.exceptions", "SchemaError"),
    "StoreError": ("grokwatch.exceptions", "StoreError"),
    "UnknownRunError": ("grokwatch.exceptions", "UnknownRunError"),
    "ConstantForecaster": ("grokwatch.forecast", "ConstantForecaster"),
    "GrokForecaster": ("grokwatch.forecast", "GrokForecaster"),
    "NullForecaster": ("grokwatch.forecast", "NullForecaster"),
    "load_forecaster": ("grokwatch.forecast.io", "load"),
    "HTTPTransport": ("grokwatch.http_transport", "HTTPTransport"),
    "Layers": ("grokwatch.options", "Layers"),
    "Limits": ("grokwatch.options", "Limits"),
    "ModelIO": ("grokwatch.adapters", "ModelIO"),
    "open_transport": ("grokwatch.destinations", "open_transport"),
    "RunPolicy": ("grokwatch.policy", "RunPolicy"),
    "PROBES": ("grokwatch.probes", "BUILTIN"),
    "Probe": ("grokwatch.probes", "Probe"),
    "ProbeContext": ("grokwatch.probes", "ProbeContext"),
    "ProbeResult": ("grokwatch.probes", "ProbeResult"),
    "RunData": ("grokwatch.rundata", "RunData"),
    "MemoryStore": ("grokwatch.store", "MemoryStore"),
    "SQLiteStore": ("grokwatch.store", "SQLiteStore"),
    "MemoryTransport": ("grokwatch.transport", "MemoryTransport"),
    "NullTransport": ("grokwatch.transport", "NullTransport"),
    "StoreTransport": ("grokwatch.transport", "StoreTransport"),
    "Transport": ("grokwatch.transport", "Transport"),
}
"""Public name -> (module, attribute) it is imported from on first use."""

if _typing.TYPE_CHECKING:
    from grokwatch.adapters import ModelIO
    from grokwatch.agent import Agent
    from grokwatch.decision import (
        Action,
        ChangePoint,
        Decision,
        Direction,
        Forecast,
        ForecastReason,
        Phase,
        Reason,
    )
    from grokwatch.destinations import open_transport
    from grokwatch.detector import RunDetector
    from grokwatch.events import EventRules, Events, Outcome
    from grokwatch.exceptions import (
        ConfigError,
        GrokwatchError,
        ProbeNotApplicable,
        SchemaError,
        StoreError,
        UnknownRunError,
    )
    from grokwatch.forecast import ConstantForecaster, GrokForecaster, NullForecaster
    from grokwatch.forecast.io import load as load_forecaster
    from grokwatch.http_transport import HTTPTransport
    from grokwatch.options import Layers, Limits
    from grokwatch.policy import RunPolicy
    from grokwatch.probes import BUILTIN as PROBES
    from grokwatch.probes import Probe, ProbeContext, ProbeResult
    from grokwatch.rundata import RunData
    from grokwatch.store import MemoryStore, SQLiteStore
    from grokwatch.transport import MemoryTransport, NullTransport, StoreTransport, Transport


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        module, attribute = _EXPORTS[name]
        value = getattr(_importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    try:  # a submodule used as an attribute (``grokwatch.metrics``) after ``import grokwatch``
        return _importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "PROBES",
    "Action",
    "Agent",
    "ChangePoint",
    "ConfigError",
    "ConstantForecaster",
    "Decision",
    "Direction",
    "EventRules",
    "Events",
    "Forecast",
    "ForecastReason",
    "GrokForecaster",
    "GrokwatchError",
    "HTTPTransport",
    "Layers",
    "Limits",
    "MemoryStore",
    "MemoryTransport",
    "ModelIO",
    "NullForecaster",
    "NullTransport",
    "Outcome",
    "Phase",
    "Probe",
    "ProbeContext",
    "ProbeNotApplicable",
    "ProbeResult",
    "Reason",
    "RunData",
    "RunDetector",
    "RunPolicy",
    "SQLiteStore",
    "SchemaError",
    "StoreError",
    "StoreTransport",
    "Transport",
    "UnknownRunError",
    "__version__",
    "load_forecaster",
    "open_transport",
]
