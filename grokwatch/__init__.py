"""grokwatch: early warning for grokking in PyTorch training runs.

The public facade: :class:`Agent` for training loops, the typed :class:`Decision` it returns,
the :class:`Probe` extension point, the stores and transports runs are kept in, and the
:class:`GrokForecaster` that forecasts grokking (with its null and constant stand-ins), and the
opt-in :class:`RunPolicy` that turns decisions into stop/extend advice.
"""

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
from grokwatch.policy import RunPolicy
from grokwatch.probes import BUILTIN as PROBES
from grokwatch.probes import Probe, ProbeContext, ProbeResult
from grokwatch.rundata import RunData
from grokwatch.store import MemoryStore, SQLiteStore
from grokwatch.transport import MemoryTransport, NullTransport, StoreTransport, Transport

__version__ = "0.1.0"

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
    "MemoryStore",
    "MemoryTransport",
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
]
