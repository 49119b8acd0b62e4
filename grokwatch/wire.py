"""Wire schemas of the detector service: the requests the agent sends and the answers it reads.

This module depends on pydantic only (no FastAPI), so the agent can build and read requests
without the service extras installed.

NaN/inf policy
--------------
A measured value on the wire is one of: a finite JSON number; ``null`` (not measured at this
step: the key is dropped before storage); or one of the exact strings ``"nan"``, ``"inf"``,
``"-inf"`` (stored and judged as the IEEE value). The non-standard JSON tokens ``NaN`` and
``Infinity``, numbers that overflow a double, booleans and numeric strings are rejected (422).
:func:`wire_value` / :func:`float_value` convert between floats and the wire form.

Every request model forbids unknown fields and is strict (no string-to-number coercion).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetPydanticSchema,
    TypeAdapter,
    WithJsonSchema,
    with_config,
)
from pydantic_core import core_schema
from typing_extensions import TypedDict

from grokwatch.decision import (
    Action,
    ChangePoint,
    ChangePointMethod,
    Decision,
    Direction,
    Forecast,
    ForecastReason,
    Phase,
    Reason,
)

API_PREFIX = "/v1"

RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
"""Run ids: 1-128 characters, ASCII letters, digits, ``_ . -``, not starting with a symbol."""
RUN_ID_RE = re.compile(RUN_ID_PATTERN)

MAX_POINTS_PER_BATCH = 10_000
MAX_VALUES_PER_POINT = 512
MAX_LABELS = 32
MAX_STEP = 2**53 - 1
"""The largest step: every whole number up to it is exact as a double, and no larger integer
rounds into range as one."""
MAX_COUNT = MAX_STEP
"""The largest count on the wire (``dropped``): exported as a double, exactly."""
MEASURE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,127}$"
"""Measure names: 1-128 of ``A-Z a-z 0-9 _ . : / -``, starting with a letter or ``_`` (a probe
name, optionally ``/`` and a module name for per-layer values)."""
LABEL_VALUE_PATTERN = r"^[^\x00-\x1f\x7f]*$"
"""Label values: any text without control characters (they become Prometheus label values)."""

NONFINITE_DESCRIPTION = (
    "A measured value: a finite JSON number; null (not measured at this step, dropped); or "
    'one of the exact strings "nan", "inf", "-inf" for non-finite values. The non-standard '
    "tokens NaN/Infinity, overflowing numbers, booleans and numeric strings are rejected."
)

NonFinite = Literal["nan", "inf", "-inf"]
FiniteNumber = Annotated[float, Field(allow_inf_nan=False)]
WireValue = Annotated[FiniteNumber | NonFinite | None, Field(description=NONFINITE_DESCRIPTION)]
MeasureName = Annotated[
    str, Field(min_length=1, max_length=128, pattern=MEASURE_NAME_PATTERN, examples=["test_loss"])
]
RunId = Annotated[
    str, Field(min_length=1, max_length=128, pattern=RUN_ID_PATTERN, examples=["run-0"])
]


def _map_schema(
    max_items: int, key_pattern: str, key_max_length: int, value_schema: dict[str, Any]
) -> WithJsonSchema:
    """The published JSON schema of a bounded name -> value map: its size bound, its keys'
    pattern and length, and its values' schema."""
    return WithJsonSchema(
        {
            "type": "object",
            "maxProperties": max_items,
            "propertyNames": {"pattern": key_pattern, "minLength": 1, "maxLength": key_max_length},
            "additionalProperties": value_schema,
        }
    )


LABEL_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
LabelKey = Annotated[str, Field(min_length=1, max_length=64, pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, Field(max_length=256, pattern=LABEL_VALUE_PATTERN)]
Labels = Annotated[
    dict[LabelKey, LabelValue],
    Field(max_length=MAX_LABELS),
    _map_schema(
        MAX_LABELS,
        LABEL_KEY_PATTERN,
        64,
        {"type": "string", "maxLength": 256, "pattern": LABEL_VALUE_PATTERN},
    ),
]
"""Label names follow Prometheus label-name rules; values are short strings."""


def _to_int(value: float) -> int:
    if not value.is_integer():
        raise ValueError(f"must be a whole number, got {value!r}")
    return int(value)


def _whole(high: int | None = None) -> GetPydanticSchema:
    """A whole number from 0 to ``high``. JSON Schema integers include ``5.0``: integral floats
    are accepted (and become ints; a decimal literal is read as the nearest double first, so
    1.0000000000000001 is 1), strings and booleans refused (strict); a JSON integer is checked
    in pydantic-core alone, with no Python call per value. A JSON integer the int branch
    refused reaches the float branch as a double: below 2**53 none past ``high`` rounds into
    range. One error whatever the branch ("a whole number from 0 to ...")."""
    assert high is None or high < 2**53
    bounds: dict[str, Any] = {"ge": 0} if high is None else {"ge": 0, "le": high}
    union = core_schema.union_schema(
        [
            core_schema.int_schema(strict=True, **bounds),
            core_schema.no_info_after_validator_function(
                _to_int, core_schema.float_schema(strict=True, **bounds)
            ),
        ],
        custom_error_type="whole_number",
        custom_error_message="Input should be a whole number from 0"
        + ("" if high is None else f" to {high}"),
    )
    return GetPydanticSchema(lambda _source, _handler: union)


Count = Annotated[
    int, _whole(MAX_COUNT), WithJsonSchema({"type": "integer", "minimum": 0, "maximum": MAX_COUNT})
]
Step = Annotated[
    int, _whole(MAX_STEP), WithJsonSchema({"type": "integer", "minimum": 0, "maximum": MAX_STEP})
]

_NONFINITE: dict[str, float] = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _finite_json(value: dict[str, Any]) -> dict[str, Any]:
    """Reject NaN/Infinity anywhere inside free-form JSON (the tokens are not JSON)."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("non-finite numbers (NaN, Infinity) are not allowed; send null")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_finite_json)]
"""Free-form JSON object; NaN/Infinity tokens anywhere inside are rejected."""


def wire_value(value: float) -> float | NonFinite:
    """A float in its wire form (non-finite values become ``"nan"``, ``"inf"``, ``"-inf"``)."""
    value = float(value)
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "nan"
    return "inf" if value > 0 else "-inf"


def float_value(value: float | str) -> float:
    """The float of a wire value (``None`` is handled by the caller: it means "absent")."""
    return _NONFINITE[value] if isinstance(value, str) else float(value)


def wire_values(values: Mapping[str, float]) -> dict[str, float | NonFinite]:
    return {k: wire_value(v) for k, v in values.items()}


def float_values(values: Mapping[str, float | str | None]) -> dict[str, float]:
    """Floats of a wire mapping; ``null`` entries are dropped (not measured)."""
    out = dict(values)
    for k, v in values.items():
        if type(v) is not float:
            if v is None:
                del out[k]
            else:
                out[k] = float_value(v)
    return out  # type: ignore[return-value]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests -------------------------------------------------------------------------------


class RunCreate(_Request):
    """Register a run. Registering an existing run id again is a no-op (its data is kept)."""

    run_id: RunId
    task: str | None = Field(None, max_length=256, description="What the run learns.")
    model: str | None = Field(None, max_length=256, description="Model architecture name.")
    hyperparameters: JsonObject = Field(
        default_factory=dict, description="The run's resolved configuration (any JSON)."
    )
    budget: Step | None = Field(None, description="Step budget the outcome is judged within.")
    labels: Labels = Field(
        default_factory=dict, description="Free-form string labels (sweep, user, ...)."
    )
    meta: JsonObject = Field(
        default_factory=dict, description="Other agent metadata (probes, layout, rules)."
    )


Values = Annotated[
    dict[MeasureName, WireValue],
    Field(max_length=MAX_VALUES_PER_POINT),
    _map_schema(
        MAX_VALUES_PER_POINT, MEASURE_NAME_PATTERN, 128, TypeAdapter(WireValue).json_schema()
    ),
]
"""A point's measured values by measure name (at most ``MAX_VALUES_PER_POINT``)."""


@with_config(_Request.model_config)
class Point(TypedDict):  # a TypedDict: parses faster than one model per point
    """One evaluation of a run: its step and the measured values."""

    step: Step
    values: Values


class PointsBatch(_Request):
    """A batch of evaluations. Idempotent on (run, step): a step seen before is ignored, and
    steps may arrive in any order."""

    points: Annotated[list[Point], Field(min_length=1, max_length=MAX_POINTS_PER_BATCH)]
    dropped: Count | None = Field(
        None, description="Records the agent's transport has dropped so far (cumulative)."
    )


class RunFinish(_Request):
    """Mark a run finished, with the agent's summary (any JSON object)."""

    summary: JsonObject = Field(default_factory=dict)


# -- responses ------------------------------------------------------------------------------


class ForecastOut(_Response):
    """A forecast (see :class:`grokwatch.Forecast`); non-finite numbers are sent as null."""

    step: int
    p_grok_horizon: float | None
    horizon: int
    p_grok_budget: float | None
    t_grok: float | None = None
    t_grok_low: float | None = None
    t_grok_high: float | None = None
    confidence: float | None = 1.0
    reason: str = Field("", description="Why the confidence is what it is (ForecastReason).")
    phase: Phase | None = None
    alert: bool = False
    hopeless: bool = False
    message: str = ""
    missing: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, forecast: Forecast | None) -> ForecastOut | None:
        if forecast is None:
            return None
        return cls.model_construct(
            step=forecast.step,
            p_grok_horizon=_finite_or_none(forecast.p_grok_horizon),
            horizon=forecast.horizon,
            p_grok_budget=_finite_or_none(forecast.p_grok_budget),
            t_grok=_finite_or_none(forecast.t_grok),
            t_grok_low=_finite_or_none(forecast.t_grok_low),
            t_grok_high=_finite_or_none(forecast.t_grok_high),
            confidence=_finite_or_none(forecast.confidence),
            reason=str(forecast.reason),
            phase=forecast.phase,
            alert=forecast.alert,
            hopeless=forecast.hopeless,
            message=forecast.message,
            missing=list(forecast.missing),
        )

    def to_forecast(self) -> Forecast:
        return Forecast(
            step=self.step,
            p_grok_horizon=_nan_if_none(self.p_grok_horizon),
            horizon=self.horizon,
            p_grok_budget=_nan_if_none(self.p_grok_budget),
            t_grok=self.t_grok,
            t_grok_low=self.t_grok_low,
            t_grok_high=self.t_grok_high,
            confidence=_nan_if_none(self.confidence),
            reason=_forecast_reason(self.reason),
            phase=self.phase,
            alert=self.alert,
            hopeless=self.hopeless,
            message=self.message,
            missing=tuple(self.missing),
        )


class ChangePointOut(_Response):
    """A bend in one measure's trend (see :class:`grokwatch.ChangePoint`)."""

    measure: str
    step: int
    direction: Direction
    strength: float | None
    method: ChangePointMethod
    detected_at: int
    slope_before: float | None
    slope_after: float | None

    @classmethod
    def of(cls, cp: ChangePoint) -> ChangePointOut:
        return cls.model_construct(
            measure=cp.measure,
            step=cp.step,
            direction=cp.direction,
            strength=_finite_or_none(cp.strength),
            method=cp.method,
            detected_at=cp.detected_at,
            slope_before=_finite_or_none(cp.slope_before),
            slope_after=_finite_or_none(cp.slope_after),
        )

    def to_change_point(self) -> ChangePoint:
        return ChangePoint(
            measure=self.measure,
            step=self.step,
            direction=self.direction,
            strength=_nan_if_none(self.strength),
            method=self.method,
            detected_at=self.detected_at,
            slope_before=_nan_if_none(self.slope_before),
            slope_after=_nan_if_none(self.slope_after),
        )


class DecisionOut(_Response):
    """The detector's advice for the run (see :class:`grokwatch.Decision`)."""

    step: int
    action: Action
    reason: Reason
    message: str
    phase: Phase | None = None
    forecast: ForecastOut | None = None
    extend_steps: int = 0
    change_points: list[ChangePointOut] = Field(
        default_factory=list, description="Change points confirmed at this update."
    )

    @classmethod
    def of(cls, decision: Decision | None) -> DecisionOut | None:
        if decision is None:
            return None
        return cls.model_construct(
            step=decision.step,
            action=decision.action,
            reason=decision.reason,
            message=decision.message,
            phase=decision.phase,
            forecast=ForecastOut.of(decision.forecast),
            extend_steps=decision.extend_steps,
            change_points=[ChangePointOut.of(cp) for cp in decision.change_points],
        )

    def to_decision(self) -> Decision:
        return Decision(
            step=self.step,
            action=self.action,
            reason=self.reason,
            message=self.message,
            phase=self.phase,
            forecast=None if self.forecast is None else self.forecast.to_forecast(),
            extend_steps=self.extend_steps,
            change_points=tuple(cp.to_change_point() for cp in self.change_points),
        )


class EventsOut(_Response):
    t_mem: int | None = None
    t_grok: int | None = None
    gap: int | None = None
    sharpness: float | None = None


class IngestResult(_Response):
    run_id: str
    accepted: int = Field(description="Points stored by this request.")
    duplicates: int = Field(description="Points ignored because their step was already stored.")
    last_step: int | None
    phase: Phase | None
    decision: DecisionOut | None


class RunInfo(_Response):
    """One row of the run list."""

    run_id: str
    created_at: float
    updated_at: float
    finished_at: float | None
    live: bool = Field(description="Held in memory and exported to Prometheus.")
    n_points: int
    task: str | None = None
    model: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class RunState(RunInfo):
    """A run's full state: registration, events, phase, outcome, decision and forecast."""

    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    budget: int | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    last_step: int | None = None
    last_values: dict[str, WireValue] = Field(default_factory=dict)
    phase: Phase | None = None
    outcome: str | None = None
    events: EventsOut = Field(default_factory=EventsOut)
    decision: DecisionOut | None = None
    forecast: ForecastOut | None = None
    change_points: list[ChangePointOut] = Field(
        default_factory=list, description="Every change point the detector confirmed so far."
    )
    summary: dict[str, Any] = Field(default_factory=dict)


class RunList(_Response):
    runs: list[RunInfo]
    total: int
    offset: int
    limit: int


class Health(_Response):
    status: Literal["ok", "loading", "unavailable"]
    live_runs: int = 0
    loaded_runs: int = 0
    forecast_backlog: int = Field(
        default=0, description="Runs answered before their forecast that still wait for it."
    )
    detail: str = ""


class ErrorOut(_Response):
    """Every error response: a stable machine-readable ``error`` code and a message."""

    error: str = Field(description="Reason code, also the `reason` label of the rejected counter.")
    message: str
    detail: list[dict[str, Any]] | None = None


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _forecast_reason(value: str) -> str:
    try:
        return ForecastReason(value)
    except ValueError:
        return value


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value
