"""grokwatch: early warning for grokking in PyTorch training runs.

The public facade: :class:`Agent` for training loops, the typed :class:`Decision` it returns,
the :class:`Probe` extension point and the stores and transports runs are kept in.
"""

from grokwatch.agent import Agent
from grokwatch.decision import Action, Decision, Forecast, Phase, Reason
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
from grokwatch.http_transport import HTTPTransport
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
    "ConfigError",
    "Decision",
    "EventRules",
    "Events",
    "Forecast",
    "GrokwatchError",
    "HTTPTransport",
    "MemoryStore",
    "MemoryTransport",
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
    "SQLiteStore",
    "SchemaError",
    "StoreError",
    "StoreTransport",
    "Transport",
    "UnknownRunError",
    "__version__",
]
