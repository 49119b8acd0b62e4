"""Every error grokwatch raises on purpose.

Hierarchy::

    GrokwatchError                 base of everything below
    ├── ConfigError (ValueError)   a bad option, probe name, cadence or data shape
    ├── ProbeNotApplicable         a probe does not apply to this model (reported, never raised
    │                              into training)
    ├── StoreError                 the run database refused an operation
    │   └── UnknownRunError (KeyError)
    ├── SchemaError (ValueError)   a saved file or payload has an unknown format version
    └── ServiceError               the detector service refuses a request; the HTTP status of
        │                          each is set in one place, ``grokwatch.service.errors``
        ├── AuthError              missing or wrong bearer token (401)
        ├── PayloadTooLargeError   request body over the size limit (413)
        ├── UnsupportedMediaTypeError  a write whose Content-Type is not JSON (415)
        ├── RunLimitError          the cap on live runs is reached (429)
        └── NotReadyError          the service is not serving requests yet (503)

User-input errors subclass ``ValueError`` so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class GrokwatchError(Exception):
    """Base class of every grokwatch error."""


class ConfigError(GrokwatchError, ValueError):
    """An option, probe name, cadence or data set that cannot be used."""


class ProbeNotApplicable(GrokwatchError):
    """Raised inside a probe when the model lacks what the probe measures.

    The probe runner turns it into a ``not_applicable`` result; it never reaches training.
    """


class StoreError(GrokwatchError):
    """The run database could not complete an operation."""


class UnknownRunError(StoreError, KeyError):
    """A run id that the store has never seen."""


class SchemaError(GrokwatchError, ValueError):
    """A saved file or payload whose format version this code does not read."""


class ServiceError(GrokwatchError):
    """The detector service refuses a request (mapped to an HTTP status by the service)."""


class AuthError(ServiceError):
    """A write without the configured bearer token, or with a wrong one."""


class PayloadTooLargeError(ServiceError):
    """A request body larger than the service's limit."""


class UnsupportedMediaTypeError(ServiceError):
    """A write whose body is not declared as JSON (``Content-Type: application/json``)."""


class RunLimitError(ServiceError):
    """Registering (or reloading) a run would exceed the cap on live runs."""


class NotReadyError(ServiceError):
    """The service cannot serve the request now (starting, stopping or store unavailable)."""
