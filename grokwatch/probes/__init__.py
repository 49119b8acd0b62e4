"""Progress probes: one small class per measure, looked up by name.

Importing this package registers every built-in probe in :data:`BUILTIN`.
"""

from grokwatch.probes.base import Capture, Layout, Probe, ProbeContext, ProbeResult, measuring
from grokwatch.probes.registry import BUILTIN, register, resolve, run_probe, run_probes

# Built-in probes register themselves on import, in this order (performance first).
from grokwatch.probes import performance  # noqa: F401  # isort: skip
from grokwatch.probes import (  # noqa: F401  # isort: skip
    weights,
    activations,
    circuit,
    dropout,
    embedding,
    dynamics,
)

__all__ = [
    "BUILTIN",
    "Capture",
    "Layout",
    "Probe",
    "ProbeContext",
    "ProbeResult",
    "measuring",
    "register",
    "resolve",
    "run_probe",
    "run_probes",
]
