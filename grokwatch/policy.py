"""Run control: when to stop a run, when to give it more steps (opt-in).

A :class:`RunPolicy` is plain configuration (a frozen dataclass, saved with the run); for each
run it opens a :class:`RunControl` that turns the detector's :class:`~grokwatch.Decision`
(phase, forecast) into ``Action.STOP``, ``Action.EXTEND`` or ``Action.CONTINUE`` with an enum
:class:`~grokwatch.Reason` and a readable message:

==================  =========================================================================
action (reason)     when
==================  =========================================================================
STOP (FINISHED)     the run generalized (``t_grok`` seen) and stayed so for
                    ``finish_patience`` more evaluations
STOP (HOPELESS)     ``patience`` consecutive confident forecasts with P(grok within budget)
                    at or below the hopeless threshold, none in phase ``grokking``, all at or
                    after ``min_fraction`` of the budget
EXTEND              at the last evaluation before the (possibly extended) budget, the run
(GROKS_AFTER_       has memorized and either is in phase ``grokking`` or is forecast, with
BUDGET)             confidence, to grok within budget + the extension still allowed with
                    probability >= ``extend_probability``; ``extend_steps`` reaches the upper
                    end of the forecast ``t_grok`` interval plus one evaluation, at most what
                    ``max_extension`` (a share of the original budget) still allows
CONTINUE            anything else (the detector's own reason and message are kept)
==================  =========================================================================

A run in phase ``grokking`` is never stopped, and a forecast below ``min_confidence`` never
counts towards a stop. Each action can be turned off (``stop_hopeless``, ``stop_finished``,
``extend``).

**The hopeless threshold comes from a stated risk.** ``risk`` is the share of runs that
generalize within their budget which the stop rule may lose. For the forecaster shipped with
grokwatch, the threshold is read from ``forecast/model/policy_calibration.json``: the stop
rule replayed on the model's out-of-fold validation runs (the same five folds that chose its
alert threshold; ``benchmarks/control_calibrate.py``) at cadences 50, 250 and 500 steps. The
threshold is the largest at which at most ``floor(risk * n)`` of those runs would have been
stopped before ``t_grok``. A ``patience`` or ``min_fraction`` between grid values uses the
next lower grid value (a lower threshold: more careful). Another forecaster falls back to its
own ``hopeless`` flag (its own threshold), and the decision's message says so;
``hopeless_threshold=`` overrides both.

Safety: :meth:`RunControl.decide` never raises (an internal failure answers ``CONTINUE`` with
``Reason.POLICY_ERROR``); extensions add up to at most ``max_extension`` of the original budget;
every stop and extension is kept in :attr:`RunControl.actions` (the run table's summary).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from grokwatch.decision import Action, Decision, Phase, Reason
from grokwatch.exceptions import ConfigError
from grokwatch.forecast.online import FittedModel, Forecaster, RunForecaster

__all__ = [
    "CALIBRATION_PATH",
    "ActionRecord",
    "RunControl",
    "RunPolicy",
    "stop_statistic",
]

log = logging.getLogger("grokwatch")

CALIBRATION_PATH = Path(__file__).parent / "forecast" / "model" / "policy_calibration.json"
"""Hopeless-stop statistics of the shipped model's validation runs (see the module docstring)."""

MAX_ACTIONS = 64
"""Stops and extensions kept per run (older ones are dropped; in practice a run has a few)."""


def stop_statistic(
    steps: np.ndarray,
    p: np.ndarray,
    eligible: np.ndarray,
    t_grok: int | None,
    budget: int,
    patience: int,
    min_fraction: float,
) -> float:
    """The smallest hopeless threshold at which the stop rule stops a run before ``t_grok``.

    ``p`` is P(grok within budget) per evaluation, ``eligible`` marks the evaluations that
    may count (confident, not in phase ``grokking``). The rule stops at the first window of
    ``patience`` consecutive eligible evaluations at or after ``min_fraction * budget`` whose
    ``p`` are all at or below the threshold; the statistic is the smallest window maximum
    (``inf``: no threshold stops the run).
    """
    steps = np.asarray(steps)
    ok = np.asarray(eligible, dtype=bool) & (steps >= min_fraction * budget) & (steps <= budget)
    if t_grok is not None:
        ok &= steps < t_grok
    q = np.where(ok & np.isfinite(p), p, np.inf)
    if q.size < patience:
        return math.inf
    windows = np.lib.stride_tricks.sliding_window_view(q, patience).max(axis=1)
    return float(windows.min())


@functools.cache
def _calibration(path: str) -> Mapping[str, Any] | None:
    try:
        data: Mapping[str, Any] = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data


@dataclasses.dataclass(frozen=True)
class ActionRecord:
    """One stop or extension the policy advised (an event of the run)."""

    step: int
    action: Action
    reason: Reason
    message: str
    extend_steps: int = 0
    budget: int | None = None
    """The run's budget after this action (grown by an extension)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "action": self.action.value,
            "reason": self.reason.value,
            "message": self.message,
            "extend_steps": self.extend_steps,
            "budget": self.budget,
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunPolicy:
    """When to stop or extend a run (see the module docstring). Opt-in: pass one to
    ``Agent(policy=...)`` or ``RunDetector(policy=...)``; without it every decision is
    ``CONTINUE``.

    Parameters
    ----------
    risk:
        Share (0 to 0.1) of the runs that generalize within budget that the hopeless rule may
        stop, on the forecaster's validation runs.
    stop_hopeless, stop_finished, extend:
        Turn each action on or off.
    patience:
        Consecutive confident hopeless evaluations before a stop.
    min_fraction:
        Share of the budget before which no run is stopped as hopeless.
    finish_patience:
        Evaluations after ``t_grok`` before a finished run is stopped (0: at ``t_grok``).
    max_extension:
        Most steps all extensions may add, as a share of the original budget.
    extend_probability:
        P(grok within the extended budget) a memorized run needs to be extended.
    hopeless_threshold:
        Use this P(grok within budget) threshold instead of the calibrated one.
    min_confidence:
        Forecasts below this confidence never count towards a stop or an extension.
    calibration:
        The calibration file (default :data:`CALIBRATION_PATH`).
    """

    risk: float = 0.01
    stop_hopeless: bool = True
    stop_finished: bool = True
    extend: bool = True
    patience: int = 3
    min_fraction: float = 0.2
    finish_patience: int = 1
    max_extension: float = 1.0
    extend_probability: float = 0.5
    hopeless_threshold: float | None = None
    min_confidence: float = 0.5
    calibration: str | None = None

    def __post_init__(self) -> None:
        def bad(name: str, want: str) -> ConfigError:
            return ConfigError(f"{name} must be {want}, got {name}={getattr(self, name)!r}")

        for name in ("stop_hopeless", "stop_finished", "extend"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "a bool")
        for name, low, high in (
            ("risk", 0.0, 0.1),
            ("min_fraction", 0.0, 1.0),
            ("max_extension", 0.0, 10.0),
            ("extend_probability", 0.0, 1.0),
            ("min_confidence", 0.0, 1.0),
        ):
            v = getattr(self, name)
            if not isinstance(v, int | float) or isinstance(v, bool) or not low <= v <= high:
                raise bad(name, f"a number in [{low}, {high}]")
        for name, low in (("patience", 1), ("finish_patience", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise bad(name, f"an int >= {low}")
        h = self.hopeless_threshold
        if h is not None and (not isinstance(h, int | float) or not 0.0 <= h <= 1.0):
            raise bad("hopeless_threshold", "None or a number in [0, 1]")

    # -- configuration as data ----------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunPolicy:
        """The policy saved by :meth:`to_json`; unknown keys raise :class:`ConfigError`."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a run policy must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown run policy settings: {', '.join(unknown)}")
        return cls(**data)

    # -- thresholds ---------------------------------------------------------------------------

    def calibrated_threshold(self, forecaster: Forecaster | None, cadence: int) -> float | None:
        """The hopeless threshold for ``risk`` at ``cadence``, or ``None`` when the calibration
        does not belong to ``forecaster`` (then its own ``hopeless`` flag is used)."""
        if self.hopeless_threshold is not None:
            return float(self.hopeless_threshold)
        data = _calibration(str(self.calibration or CALIBRATION_PATH))
        if data is None or not _same_model(data.get("model", {}), forecaster):
            return None
        cells: Sequence[Mapping[str, Any]] = data.get("cells", [])
        cadences = sorted({int(c["cadence"]) for c in cells})
        if not cadences:
            return None
        near = min(cadences, key=lambda c: abs(math.log(c) - math.log(max(cadence, 1))))
        here = [c for c in cells if c["cadence"] == near]
        pats = [c["patience"] for c in here if c["patience"] <= self.patience]
        fracs = [c["min_fraction"] for c in here if c["min_fraction"] <= self.min_fraction + 1e-9]
        if not pats or not fracs:
            return None
        cell = next(
            c for c in here if c["patience"] == max(pats) and c["min_fraction"] == max(fracs)
        )
        allowed = math.floor(self.risk * cell["n"] + 1e-9)
        lowest = [math.inf if v is None else float(v) for v in cell["lowest"]]
        v = lowest[min(allowed, len(lowest) - 1)]
        return 0.5 if not math.isfinite(v) else float(min(np.nextafter(v, -np.inf), 0.5))

    def start(
        self,
        *,
        budget: int | None,
        forecaster: Forecaster | None = None,
        run: RunForecaster | None = None,
    ) -> RunControl:
        """The per-run state. ``forecaster``: the detector's (to pick the threshold);
        ``run``: its per-run forecaster (asked ``p_grok_within`` for extensions)."""
        return RunControl(self, budget=budget, forecaster=forecaster, run=run)


def _same_model(meta: Mapping[str, Any], forecaster: Forecaster | None) -> bool:
    """Whether the calibration was made for ``forecaster``: a fitted model with the same
    alert and hopeless thresholds."""
    if not isinstance(forecaster, FittedModel):
        return False
    try:
        return bool(
            math.isclose(meta["alert_threshold"], forecaster.alert_threshold_, rel_tol=1e-12)
            and math.isclose(
                meta["hopeless_threshold"], forecaster.hopeless_threshold_, rel_tol=1e-12
            )
        )
    except (KeyError, TypeError):
        return False


class RunControl:
    """One run's policy state: the consecutive hopeless evaluations, the budget with its
    extensions, and the :class:`ActionRecord` of every stop and extension."""

    def __init__(
        self,
        policy: RunPolicy,
        *,
        budget: int | None,
        forecaster: Forecaster | None = None,
        run: RunForecaster | None = None,
    ) -> None:
        self.policy = policy
        self.original_budget = budget
        self.budget = budget
        """The budget with every extension advised so far."""
        self.forecaster = forecaster
        self.run = run
        self.actions: list[ActionRecord] = []
        """The latest :data:`MAX_ACTIONS` stops and extensions."""
        self.n_actions = 0
        """Every stop and extension advised (also those no longer in :attr:`actions`)."""
        self.extended = 0
        self.errors = 0
        self._hopeless = 0
        self._generalized = 0
        self._last_step: int | None = None
        self._cadence: int | None = None
        self._threshold: tuple[int, float | None] | None = None
        self._stopped: Decision | None = None

    @property
    def last_action(self) -> ActionRecord | None:
        return self.actions[-1] if self.actions else None

    def action_counts(self) -> dict[tuple[str, str], int]:
        """Stops and extensions by ``(action, reason)`` (the Prometheus counter)."""
        counts: dict[tuple[str, str], int] = {}
        for a in self.actions:
            key = (a.action.value, a.reason.value)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def summary(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "extended_steps": self.extended,
            "actions": [a.to_json() for a in self.actions],
        }

    def decide(self, decision: Decision) -> Decision:
        """The policy's decision for the detector's ``decision``. Never raises."""
        try:
            return self._decide(decision)
        except Exception as exc:  # the policy must never break the run it advises
            self.errors += 1
            if self.errors <= 3:
                log.warning("grokwatch run policy error at step %s: %r", decision.step, exc)
            return dataclasses.replace(
                decision,
                action=Action.CONTINUE,
                reason=Reason.POLICY_ERROR,
                message=f"{decision.message}; run policy failed ({type(exc).__name__}: {exc})",
            )

    # -- the rules ----------------------------------------------------------------------------

    def _decide(self, d: Decision) -> Decision:
        if self._stopped is not None:  # a stop stands (the loop may still be winding down)
            return dataclasses.replace(
                self._stopped,
                step=d.step,
                phase=d.phase,
                forecast=d.forecast,
                change_points=d.change_points,
            )
        step = d.step
        fresh = self._last_step is None or step > self._last_step
        if fresh:
            if self._last_step is not None:  # the latest gap: the first may be irregular
                self._cadence = step - self._last_step
            self._last_step = step
        if not fresh:
            return d
        pol, phase, f = self.policy, d.phase, d.forecast
        if phase is Phase.GENERALIZED:
            self._generalized += 1
            self._hopeless = 0
            if pol.stop_finished and self._generalized > pol.finish_patience:
                return self._act(
                    d,
                    Action.STOP,
                    Reason.FINISHED,
                    f"generalized (phase generalized for {self._generalized} evaluations): stop",
                )
            return d
        hopeless_text = self._count_hopeless(d)
        if pol.stop_hopeless and self._hopeless >= pol.patience:
            return self._act(d, Action.STOP, Reason.HOPELESS, hopeless_text)
        extension = self._extension(d)
        if extension is not None:
            steps, why = extension
            return self._act(d, Action.EXTEND, Reason.GROKS_AFTER_BUDGET, why, steps)
        if self.extended and self.original_budget is not None and step > self.original_budget:
            head = d.message.split(";", 1)[0]
            return dataclasses.replace(
                d,
                reason=Reason.GROKS_AFTER_BUDGET,
                message=f"{head}; in an extension to {self.budget}: forecast to grok after the "
                f"original budget of {self.original_budget}"
                + (f"; {hopeless_text}" if hopeless_text else ""),
            )
        if hopeless_text and f is not None:
            return dataclasses.replace(d, message=f"{d.message}; {hopeless_text}")
        return d

    def _threshold_now(self) -> float | None:
        cadence = self._cadence or 0
        if self._threshold is None or (cadence and self._threshold[0] != cadence):
            self._threshold = (
                cadence,
                self.policy.calibrated_threshold(self.forecaster, cadence or 50),
            )
        return self._threshold[1]

    def _p_within(self, budget: int) -> float | None:
        if self.run is None:
            return None
        p = self.run.p_grok_within(budget)
        return None if p is None or not math.isfinite(p) else float(p)

    def _count_hopeless(self, d: Decision) -> str:
        """Update the consecutive-hopeless count; a text when the evaluation counted."""
        pol, f, budget = self.policy, d.forecast, self.budget
        if f is None or budget is None or d.phase is Phase.GROKKING:
            self._hopeless = 0
            return "not stopped: phase grokking" if d.phase is Phase.GROKKING else ""
        if not f.confidence >= pol.min_confidence or d.step < pol.min_fraction * (
            self.original_budget or budget
        ):
            self._hopeless = 0
            return ""
        p = f.p_grok_budget
        if self.original_budget is not None and d.step > self.original_budget:
            p_ext = self._p_within(budget)  # within an extension: P(grok by its end)
            if p_ext is None:
                self._hopeless = 0
                return ""
            p = p_ext
        threshold = self._threshold_now()
        if threshold is None and p is not f.p_grok_budget:
            self._hopeless = 0  # within an extension, uncalibrated: no threshold to judge by
            return ""
        if threshold is None:
            hopeless, where = f.hopeless, "the forecaster's own hopeless threshold (uncalibrated)"
        else:
            hopeless = p <= threshold
            where = f"hopeless threshold {threshold:.3f} (risk {pol.risk:g})"
        if not hopeless:
            self._hopeless = 0
            return ""
        self._hopeless += 1
        return (
            f"hopeless: P(grok within budget {budget})={p:.3f} at or below {where} for "
            f"{self._hopeless} evaluations (stops after {pol.patience})"
        )

    def _extension(self, d: Decision) -> tuple[int, str] | None:
        pol, f, budget, base = self.policy, d.forecast, self.budget, self.original_budget
        if not pol.extend or budget is None or base is None or self._cadence is None:
            return None
        if d.step + self._cadence < budget or d.step > budget:
            return None  # not the last evaluation before the budget (the next is at or past it)
        if d.phase not in (Phase.PLATEAU, Phase.GROKKING):
            return None
        allowed = int(pol.max_extension * base) - self.extended
        if allowed < self._cadence:
            return None
        p = self._p_within(budget + allowed)
        sure = f is not None and f.confidence >= pol.min_confidence
        if d.phase is not Phase.GROKKING and not (
            sure and p is not None and p >= pol.extend_probability
        ):
            return None
        target = budget + allowed
        if f is not None and f.t_grok_high is not None and math.isfinite(f.t_grok_high):
            target = math.ceil(f.t_grok_high)
        steps = target - budget + self._cadence
        steps = int(math.ceil(steps / self._cadence) * self._cadence)
        steps = max(self._cadence, min(steps, allowed))
        why = "phase grokking" if d.phase is Phase.GROKKING else "memorized"
        if p is not None:
            why += f", P(grok within {budget + allowed})={p:.2f}"
        if f is not None and f.t_grok is not None and math.isfinite(f.t_grok):
            why += f", t_grok~{f.t_grok:.0f}"
        return steps, f"will probably grok soon after the budget ({why}): extend by {steps}"

    def _act(
        self, d: Decision, action: Action, reason: Reason, why: str, extend_steps: int = 0
    ) -> Decision:
        if action is Action.EXTEND and self.budget is not None:
            self.budget += extend_steps
            self.extended += extend_steps
            self._hopeless = 0
        record = ActionRecord(d.step, action, reason, why, extend_steps, self.budget)
        self.actions.append(record)
        self.n_actions += 1
        del self.actions[:-MAX_ACTIONS]
        head = d.message.split(";", 1)[0]
        out = dataclasses.replace(
            d,
            action=action,
            reason=reason,
            message=f"{head}; {why}",
            extend_steps=extend_steps,
        )
        if action is Action.STOP:
            self._stopped = out
        return out
