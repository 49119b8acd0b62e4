"""Replaying a stored run through the online feature code: what fitting and evaluation share.

:func:`replay` turns a stored run (``trainer.corpus.Run``: steps, columns, values, labels)
into a :class:`Replay` -- the feature rows and forecast contexts at every evaluation, exactly
as the online detector would have seen them, optionally thinned to a coarser cadence.
:func:`choose_alert_threshold` is how both fix an alert threshold for a false-alarm budget.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

from grokwatch.decision import ChangePoint, Forecast
from grokwatch.events import EventRules
from grokwatch.forecast.features import FEATURE_NAMES, FeatureState, input_rows
from grokwatch.forecast.forecaster import GrokForecaster
from grokwatch.forecast.online import Context, assemble

__all__ = [
    "AGENT_COSTS",
    "DEFAULT_GRID",
    "MLP_COSTS",
    "NEGATIVE",
    "POSITIVE",
    "AgentCosts",
    "Replay",
    "StoredRun",
    "architecture_family",
    "choose_alert_threshold",
    "config_group",
    "evaluations",
    "raw_measures",
    "replay",
    "thin",
    "with_family",
]

POSITIVE = ("grokking",)
"""Outcomes that count as grokking runs for recall, lead and AUROC."""
NEGATIVE = ("memorization", "confusion")
"""Outcomes that count as runs that do not grok within the budget (false alarms)."""
SEED_KEYS = ("seed", "data_seed", "init_seed")


class StoredRun(Protocol):
    """What :func:`replay` needs of a corpus run (``trainer.corpus.Run`` has it)."""

    steps: np.ndarray
    columns: tuple[str, ...]
    values: np.ndarray

    @property
    def run_id(self) -> str: ...
    @property
    def family(self) -> str: ...
    @property
    def split(self) -> str: ...
    @property
    def config(self) -> Mapping[str, Any]: ...
    @property
    def labels(self) -> Mapping[str, Any]: ...


def config_group(config: Mapping[str, Any]) -> str:
    """Hash of a run's configuration without its seeds (seeds of one config share it)."""
    clean = {k: v for k, v in config.items() if k not in SEED_KEYS}
    blob = json.dumps(clean, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


@dataclasses.dataclass
class Replay:
    """One run replayed through the online feature code (one row per kept evaluation)."""

    run_id: str
    family: str
    split: str
    group: str
    outcome: str
    t_mem: int | None
    t_grok: int | None
    budget: int | None
    cadence: int | str | None
    steps: np.ndarray  # (T,)
    X: np.ndarray  # (T, F)
    contexts: list[Context]
    measures: dict[str, np.ndarray]  # (T,) raw values of the measures baselines need
    change_points: list[ChangePoint]

    @property
    def gap(self) -> int | None:
        if self.t_mem is None or self.t_grok is None:
            return None
        return self.t_grok - self.t_mem

    @property
    def groks(self) -> bool:
        """Reaches ``t_grok`` within the budget (any outcome with a ``t_grok``)."""
        return self.t_grok is not None and (self.budget is None or self.t_grok <= self.budget)

    def forecasts(self, model: GrokForecaster) -> list[Forecast]:
        return [assemble(model, self.X[i], c) for i, c in enumerate(self.contexts)]


BASELINE_MEASURES = (
    "train_accuracy",
    "test_accuracy",
    "train_loss",
    "test_loss",
    "weight_norm",
    "weight_entropy",
    "activation_sparsity",
    "circuit_complexity_mean",
    "circuit_complexity",
    "mc_dropout_accuracy_var",
    "spectral_entropy",
    "loss_spectral_energy",
)


DEFAULT_GRID = "default"
"""``cadence`` of :func:`replay` for the agent's default settings (:func:`thin`)."""


class AgentCosts(NamedTuple):
    """What the agent's work costs, in training steps of the run: one evaluation's core
    (probes and the evaluation's own work), the first evaluation (a one-off, which also warms
    up), and a call that only records the loss."""

    evaluation: float
    one_off: float
    call: float


AGENT_COSTS = {"transformer": AgentCosts(0.90, 0.84, 0.00065)}
"""The agent's costs by family, as ``benchmarks/overhead.py`` measured them at the defaults
(``benchmarks/results/overhead.json``: ``core_evaluation_steps``, ``one_off_seconds`` and
``bookkeeping_us_per_call`` over ``train_step_ms``); every other family of the corpus is an
MLP: :data:`MLP_COSTS`. With these, :func:`grokwatch.schedule.planned_steps` gives the live
agent's number of evaluations (MLP 7 planned against 7 measured, transformer 20 against 20);
without the calls and the one-off it would plan 13 on the MLP."""
MLP_COSTS = AgentCosts(1.49, 1.90, 0.0027)


@functools.lru_cache(maxsize=512)
def _planned(budget: int, costs: AgentCosts) -> tuple[int, ...]:
    from grokwatch.schedule import planned_steps

    return tuple(
        planned_steps(budget, costs.evaluation, one_off=costs.one_off, call_cost=costs.call)
    )


def thin(
    steps: np.ndarray,
    cadence: int | str,
    *,
    budget: int | None = None,
    costs: AgentCosts = MLP_COSTS,
) -> np.ndarray:
    """Indices of the evaluations an agent with ``every=cadence`` would have made (the first
    evaluation and every multiple of ``cadence``). With ``cadence="default"``, those of the
    agent at its default settings: the default grid thinned by the 1 % overhead cap
    (:func:`grokwatch.schedule.planned_steps` for a run of ``budget`` steps where the agent's
    work ``costs`` what :class:`AgentCosts` says; without a budget, the last step), each planned
    step read at the newest step of the run at or before it (what the agent would have seen
    then: a corpus evaluated every 50 steps has no step 110)."""
    first = np.arange(steps.size) == 0
    if cadence == DEFAULT_GRID:
        horizon = int(budget) if budget else int(steps[-1]) if steps.size else 0
        planned = np.asarray(_planned(horizon, AgentCosts(*map(float, costs))), dtype=float)
        at = np.searchsorted(steps, planned, side="right") - 1
        keep = np.zeros(steps.size, dtype=bool)
        keep[at[at >= 0]] = True
        return np.flatnonzero(keep | first)
    if isinstance(cadence, str) or cadence < 1:
        raise ValueError(f"cadence must be an int >= 1 or {DEFAULT_GRID!r}, got {cadence=!r}")
    keep = (steps % cadence == 0) | first
    return np.flatnonzero(keep)


def raw_measures(run: StoredRun, idx: np.ndarray) -> dict[str, np.ndarray]:
    """The raw values of :data:`BASELINE_MEASURES` at the evaluations ``idx`` of ``run``
    (NaN for a measure the run lacks): what the baselines read."""
    cols = {name: j for j, name in enumerate(run.columns)}
    return {
        n: np.asarray(run.values[idx, cols[n]], dtype=float)
        if n in cols
        else np.full(len(idx), np.nan)
        for n in BASELINE_MEASURES
    }


def evaluations(run: StoredRun, cadence: int | str | None) -> np.ndarray:
    """Indices of ``run``'s evaluations a replay at ``cadence`` keeps (:func:`thin`; all
    of them for ``None``), with the run's budget and its family's :data:`AGENT_COSTS`."""
    steps = np.asarray(run.steps)
    if cadence is None:
        return np.arange(steps.size)
    budget = run.labels.get("budget") or run.config.get("steps")
    costs = AGENT_COSTS.get(architecture_family(run), MLP_COSTS)
    return thin(steps, cadence, budget=int(budget) if budget else None, costs=costs)


def replay(
    run: StoredRun,
    *,
    cadence: int | str | None = None,
    rules: EventRules | None = None,
    changepoints: str = "bayes",
) -> Replay:
    """Replay ``run`` through :class:`FeatureState` (thinned to ``cadence`` if given: steps,
    or ``"default"`` for the agent's default settings, see :func:`thin`)."""
    labels = run.labels
    budget = labels.get("budget") or run.config.get("steps")
    idx = evaluations(run, cadence)
    steps = np.asarray(run.steps)[idx]
    state = FeatureState(
        budget=int(budget) if budget else None, rules=rules, changepoints=changepoints
    )
    rows, absent = input_rows(run.columns, run.values[idx])
    X = np.full((steps.size, len(FEATURE_NAMES)), np.nan)
    contexts: list[Context] = []
    for i, step in enumerate(steps.tolist()):
        state.add_rows([step], rows[i : i + 1], absent[i : i + 1])
        X[i] = state.vector()
        contexts.append(Context.of(state))
    measures = raw_measures(run, idx)
    t_grok = labels.get("t_grok")
    t_mem = labels.get("t_mem")
    return Replay(
        run_id=run.run_id,
        family=run.family,
        split=run.split,
        group=config_group(run.config),
        outcome=str(labels.get("outcome") or ""),
        t_mem=None if t_mem is None else int(t_mem),
        t_grok=None if t_grok is None else int(t_grok),
        budget=int(budget) if budget else None,
        cadence=cadence,
        steps=steps,
        X=X,
        contexts=contexts,
        measures=measures,
        change_points=list(state.change_points),
    )


def architecture_family(run: StoredRun) -> str:
    """The family a run is held out with: its corpus family, except that corpus v1's MLPs
    without an embedding (one-hot inputs, ``embedding: false``) belong to ``onehot``, the
    family corpus v2 gives them (otherwise a held-out ``onehot`` would be fitted on v1's)."""
    if run.family == "mlp" and run.config.get("embedding") is False:
        return "onehot"
    return run.family


def with_family(r: Replay, run: StoredRun) -> Replay:
    """``r`` (a replay of ``run``) under :func:`architecture_family`."""
    fam = architecture_family(run)
    return r if fam == r.family else dataclasses.replace(r, family=fam)


def choose_alert_threshold(negative_max: Sequence[float], far: float) -> float:
    """Smallest threshold at which at most ``far`` of the negative runs ever reach it.

    ``negative_max`` holds each negative run's largest score; the threshold returned lies
    just above the ``floor(far * n) + 1``-th largest of them."""
    vals = np.sort(np.asarray([v for v in negative_max if math.isfinite(v)], dtype=float))[::-1]
    if vals.size == 0:
        return 0.5
    allowed = math.floor(far * len(negative_max) + 1e-9)
    if allowed >= vals.size:
        return float(np.nextafter(vals[-1], -np.inf)) if vals.size else 0.5
    return float(np.nextafter(vals[allowed], np.inf))
