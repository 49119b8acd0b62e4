"""The one place where exceptions become HTTP responses.

Every error response has the :class:`~grokwatch.wire.ErrorOut` body, and every
refused request increments ``grokwatch_service_rejected_requests_total{reason=...}`` with the
same ``error`` code the body carries.

==========================================  ======  =======================
exception                                   status  ``error`` / ``reason``
==========================================  ======  =======================
:class:`~grokwatch.exceptions.AuthError`    401     ``unauthorized``
:class:`~grokwatch.exceptions.UnknownRunError`  404  ``unknown_run``
no such route                               404     ``not_found``
method not allowed                          405     ``method_not_allowed``
:class:`~grokwatch.exceptions.PayloadTooLargeError`  413  ``body_too_large``
:class:`~grokwatch.exceptions.UnsupportedMediaTypeError`  415  ``unsupported_media_type``
malformed JSON                              422     ``invalid_json``
body fails the schema                       422     ``invalid_body``
path or query parameter fails validation    422     ``invalid_parameter``
:class:`~grokwatch.exceptions.ConfigError`  422     ``invalid_config``
:class:`~grokwatch.exceptions.RunLimitError`  429   ``too_many_runs``
:class:`~grokwatch.exceptions.NotReadyError`  503   ``not_ready``
:class:`~grokwatch.exceptions.StoreError`   503     ``store_unavailable``
==========================================  ======  =======================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from grokwatch.exceptions import (
    AuthError,
    ConfigError,
    NotReadyError,
    PayloadTooLargeError,
    RunLimitError,
    StoreError,
    UnknownRunError,
    UnsupportedMediaTypeError,
)
from grokwatch.wire import ErrorOut

STATUS: dict[type[Exception], tuple[int, str]] = {
    AuthError: (401, "unauthorized"),
    UnknownRunError: (404, "unknown_run"),
    PayloadTooLargeError: (413, "body_too_large"),
    UnsupportedMediaTypeError: (415, "unsupported_media_type"),
    ConfigError: (422, "invalid_config"),
    RunLimitError: (429, "too_many_runs"),
    NotReadyError: (503, "not_ready"),
    StoreError: (503, "store_unavailable"),
}
"""Status and reason code of each service-level exception (subclasses listed before bases)."""

RETRY_AFTER = {429: "5", 503: "1"}

ERROR_DOCS: dict[int, str] = {
    401: "Bearer token missing or wrong (writes, and reads with GROKWATCH_PROTECT_READS).",
    404: "No run with this id.",
    413: "Request body larger than GROKWATCH_MAX_BODY_BYTES.",
    415: "The body is not declared as JSON (Content-Type: application/json).",
    422: "Malformed JSON, or the body or a parameter fails the schema.",
    429: "The cap on live runs is reached; retry after finishing runs.",
    503: "The service is not ready or its store is unavailable; retry.",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error codes."""
    return {code: {"model": ErrorOut, "description": ERROR_DOCS[code]} for code in codes}


def error_response(
    status: int,
    error: str,
    message: str,
    detail: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = ErrorOut(error=error, message=message, detail=detail).model_dump_json(exclude_none=True)
    merged = dict(headers or {})
    if status in RETRY_AFTER:
        merged.setdefault("Retry-After", RETRY_AFTER[status])
    if status == 401:
        merged.setdefault("WWW-Authenticate", "Bearer")
    return Response(body, status_code=status, media_type="application/json", headers=merged)


def status_of(exc: Exception) -> tuple[int, str]:
    for cls, result in STATUS.items():
        if isinstance(exc, cls):
            return result
    raise LookupError(type(exc).__name__)


def _errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Validation errors without the offending input or context objects (bounded, JSON-safe)."""
    return [
        {"loc": [str(part) for part in e.get("loc", ())], "msg": e.get("msg"), "type": e["type"]}
        for e in list(errors)[:20]
    ]


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def install_error_handlers(app: FastAPI, count: Callable[[str], None]) -> None:
    """Map every exception to its status (see the module table); ``count(reason)`` is called
    once per refused request."""

    def reply(status: int, error: str, message: str, **kw: Any) -> Response:
        count(error)
        return error_response(status, error, message, **kw)

    async def service_error(request: Request, exc: Exception) -> Response:
        status, error = status_of(exc)
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        if isinstance(exc, UnknownRunError):
            message = f"unknown run {message!r}"
        return reply(status, error, message)

    async def body_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ValidationError)
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in errors):
            return reply(422, "invalid_json", "request body is not valid JSON")
        return reply(422, "invalid_body", "request body fails the schema", detail=_errors(errors))

    async def parameter_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return reply(
            422, "invalid_parameter", "a parameter fails validation", detail=_errors(exc.errors())
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        error = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return reply(exc.status_code, error, str(exc.detail), headers=headers)

    for cls in STATUS:
        app.add_exception_handler(cls, service_error)
    app.add_exception_handler(ValidationError, body_error)
    app.add_exception_handler(RequestValidationError, parameter_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
