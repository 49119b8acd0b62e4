"""Sweep specs: which runs a sweep trains, as typed, validated JSON.

    {
      "name": "mlp-train",            # names the runs in the corpus; one spec per family
      "family": "mlp",                # "mlp" (trainer.train), "transformer" or "digits"
      "sampler": "random",            # "random": n_runs draws; "grid": the product of lists
      "n_runs": 800,
      "seed": 0,                      # the sampler's seed: the same spec gives the same runs
      "every": 50,                    # probe cadence in steps (the agent's `every`)
      "budget": {"k": 12, "frac_power": 1, "min": 2000, "max": 15000, "no_decay": 3000},
      "tail": 0.5, "tail_min": 500,   # after t_grok, train this much longer, then stop
      "space": {"p": {"choice": [23, 31], "weights": [2, 1]}, "lr": {"loguniform": [3e-4, 1e-2]},
                "wd": {"choice": [0.0, {"uniform": [0.1, 3.0]}], "weights": [1, 5]}, "d_emb": 32},
      "mixture": [{"weight": 1, "space": {}}, {"weight": 0.2, "space": {"wd": 0.0}}],
      "holdout": {"op": ["x3xy"], "p": [89]}
    }

A space value is a constant (a number, string or bool), a list (a uniform choice, or a grid
axis), or a distribution: {"choice": [...], "weights": [...]} (options may themselves be
distributions), {"uniform": [lo, hi]}, {"loguniform": [lo, hi]}, {"int": [lo, hi]}
(inclusive). Keys are the family config's fields (`RunConfig`, `TransformerConfig`,
`DigitsConfig`); `steps` comes from the budget, and `seed`/`data_seed` are drawn by the sampler
(uniform over [0, 2³¹)) unless the space sets them. A mixture draws one of its components (by
weight) and overlays its space on the base space, for regions a plain product cannot say
("weight decay 0 in a fifth of the runs").

The budget of a run is the step budget its outcome label is judged within (RESEARCH.md §1).
It is chosen per run: AdamW's decoupled decay shrinks the weights by (1 − lr·wd) per step, so
1/(lr·wd) is the time scale on which weight decay can pull a memorizing network towards the
generalizing solution; grokking times scale with it, and more slowly with a smaller training
fraction. So B = clip(k / (lr·wd) · (0.5/frac)^frac_power, min, max), rounded up to a multiple
of `every`, and `no_decay` when wd = 0. An int budget is the same for every run.

Everything is checked before anything runs (`load_spec` / `SweepSpec.from_dict`): unknown keys
at any level are refused by name, impossible values are refused naming the key (a value a
config refuses, p not prime under division, a fraction outside (0, 1) at either end of a
range), and a spec that yields no runs is refused. `expand` then builds every run's config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from trainer.families import FAMILIES, Family
from trainer.tasks import is_prime

SAMPLERS = ("random", "grid")
DIST_KINDS = ("choice", "uniform", "loguniform", "int")
SEED_RANGE = 2**31  # drawn seeds lie in [0, SEED_RANGE)
TOP_KEYS = {
    "name", "family", "sampler", "n_runs", "seed", "every", "budget", "tail", "tail_min",
    "space", "mixture", "holdout", "max_samples", "role",
}  # fmt: skip
ROLES = ("train", "eval")
BUDGET_KEYS = {"k", "frac_power", "min", "max", "no_decay"}


class SpecError(ValueError):
    """A sweep spec that cannot run; the message names the offending key."""


# -- the typed spec --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Budget:
    """Per-run step budget; see the module docstring for the rule."""

    k: float = 12.0
    frac_power: float = 1.0
    min: int = 1000
    max: int = 20_000
    no_decay: int = 3000

    def steps(self, config: Mapping[str, Any], every: int) -> int:
        lr, wd = float(config["lr"]), float(config["wd"])
        if wd == 0:
            raw = float(self.no_decay)
        else:
            raw = self.k / (lr * wd) * (0.5 / float(config.get("frac", 0.5))) ** self.frac_power
        raw = min(max(raw, self.min), self.max)
        return int(math.ceil(raw / every) * every)


@dataclasses.dataclass(frozen=True)
class RunTask:
    """One unit of work: everything `trainer.sweep.run_one` needs, picklable plain data."""

    run_id: str
    spec: str  # the spec's name
    family: str
    split: str  # "train", "heldout" (a held-out op or modulus) or "eval" (eval-only family)
    config: dict[str, Any]  # the resolved family config; config["steps"] is the budget
    every: int
    tail: float
    tail_min: int
    max_samples: int
    threads: int | None = 1  # torch threads in the worker; None leaves torch's default

    @property
    def budget(self) -> int:
        return int(self.config["steps"])


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    name: str
    family: str
    sampler: str = "random"
    n_runs: int = 0
    seed: int = 0
    every: int = 50
    budget: Budget | int = dataclasses.field(default_factory=Budget)
    tail: float = 0.5
    tail_min: int = 500
    max_samples: int = 2048  # the agent's probe-set size (its default)
    space: dict[str, Any] = dataclasses.field(default_factory=dict)
    mixture: tuple[tuple[float, dict[str, Any]], ...] = ()
    holdout: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    role: str = ""  # "train" or "eval"; "" = the family's default role

    @property
    def family_(self) -> Family:
        return FAMILIES[self.family]

    @property
    def role_(self) -> str:
        return self.role or self.family_.role

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SweepSpec:
        """Parse and check a spec (see the module docstring); SpecError names the key."""
        if not isinstance(d, Mapping):
            raise SpecError(f"a spec must be a JSON object, got {type(d).__name__}")
        _refuse_unknown(d, TOP_KEYS, "spec")
        for key in ("name", "family", "space"):
            if key not in d:
                raise SpecError(f"spec key {key!r} is required")
        name, family = d["name"], d["family"]
        if not isinstance(name, str) or not name or "/" in name:
            raise SpecError(f"name must be a non-empty string without '/', got name={name!r}")
        if family not in FAMILIES:
            raise SpecError(f"family must be one of {sorted(FAMILIES)}, got family={family!r}")
        sampler = d.get("sampler", "random")
        if sampler not in SAMPLERS:
            raise SpecError(f"sampler must be one of {list(SAMPLERS)}, got sampler={sampler!r}")
        ints = {"n_runs": 0, "seed": 0, "every": 1, "tail_min": 0, "max_samples": 1}
        for key, low in ints.items():
            if key in d and (not _is_int(d[key]) or d[key] < low):
                raise SpecError(f"{key} must be an int >= {low}, got {key}={d[key]!r}")
        n_runs = d.get("n_runs", 0)
        if sampler == "random" and n_runs == 0:
            raise SpecError("n_runs must be > 0 for the random sampler: the space is empty")
        if sampler == "grid" and "n_runs" in d:
            raise SpecError("n_runs is for the random sampler; a grid runs every point once")
        role = d.get("role", "")
        if role and role not in ROLES:
            raise SpecError(f"role must be one of {list(ROLES)}, got role={role!r}")
        tail = d.get("tail", 0.5)
        if not _is_num(tail) or tail < 0:
            raise SpecError(f"tail must be a number >= 0, got tail={tail!r}")
        fields = {f.name for f in dataclasses.fields(FAMILIES[family].config_cls)}
        space = _check_space(d["space"], "space", fields, sampler)
        mixture = _check_mixture(d.get("mixture", ()), fields, sampler)
        holdout = _check_holdout(d.get("holdout", {}), fields)
        spec = cls(
            name=name,
            family=family,
            sampler=sampler,
            n_runs=n_runs,
            seed=d.get("seed", 0),
            every=d.get("every", 50),
            budget=_check_budget(d.get("budget", {})),
            tail=float(tail),
            tail_min=d.get("tail_min", 500),
            max_samples=d.get("max_samples", 2048),
            space=space,
            mixture=mixture,
            holdout=holdout,
            role=role,
        )
        spec._check_values()
        if not spec.tasks():
            raise SpecError("the spec yields no runs: the space is empty")
        return spec

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mixture"] = [{"weight": w, "space": s} for w, s in self.mixture]
        if not self.mixture:
            del d["mixture"]
        if self.sampler == "grid":
            del d["n_runs"]
        if not self.role:
            del d["role"]
        return d

    # -- expansion ---------------------------------------------------------------------------

    def components(self) -> list[tuple[float, dict[str, Any]]]:
        """(weight, merged space) of each mixture component; the base space alone if none."""
        if not self.mixture:
            return [(1.0, dict(self.space))]
        return [(w, {**self.space, **s}) for w, s in self.mixture]

    def points(self) -> Iterator[dict[str, Any]]:
        """The raw config points (seeds included, steps not yet), in a reproducible order."""
        rng = random.Random(self.seed)
        if self.sampler == "grid":
            for _, space in self.components():
                keys = sorted(space)
                axes = [v if isinstance(v, list) else [v] for v in (space[k] for k in keys)]
                for combo in itertools.product(*axes):
                    yield self._with_seeds(dict(zip(keys, combo, strict=True)), rng)
            return
        comps = self.components()
        weights = [w for w, _ in comps]
        for _ in range(self.n_runs):
            _, space = rng.choices(comps, weights=weights)[0]
            point = {k: _draw(space[k], rng) for k in sorted(space)}
            yield self._with_seeds(point, rng)

    def _with_seeds(self, point: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        for key in ("seed", "data_seed"):
            draw = rng.randrange(SEED_RANGE)  # drawn either way: one point never shifts another
            point.setdefault(key, draw)
        return point

    def resolve(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """A point → the family config's full dict, with the budget as `steps`."""
        point = {"eval_every": self.every, **point}
        make = self.family_.config_cls.from_dict
        try:
            make({**point, "steps": 1})  # the values first: the budget rule divides by them
            budget = self.budget
            point["steps"] = budget if isinstance(budget, int) else budget.steps(point, self.every)
            config = make(point)
            self.family_.check(config)
        except (TypeError, ValueError) as exc:
            raise SpecError(f"space: {exc}") from exc
        return config.to_dict()

    def split_of(self, config: Mapping[str, Any]) -> str:
        if self.role_ == "eval":
            return "eval"
        held = any(config.get(k) in values for k, values in self.holdout.items())
        return "heldout" if held else "train"

    def tasks(self) -> list[RunTask]:
        """Every run of the spec, deduplicated by run id, in a reproducible order."""
        seen: dict[str, RunTask] = {}
        for point in self.points():
            config = self.resolve(point)
            run_id = run_id_of(self.family, config, self.every, self.max_samples)
            seen.setdefault(
                run_id,
                RunTask(
                    run_id=run_id,
                    spec=self.name,
                    family=self.family,
                    split=self.split_of(config),
                    config=config,
                    every=self.every,
                    tail=self.tail,
                    tail_min=self.tail_min,
                    max_samples=self.max_samples,
                ),
            )
        return list(seen.values())

    # -- value checks --------------------------------------------------------------------------

    def _check_values(self) -> None:
        """Every value the space can produce, key by key, is accepted by the family config.

        Each choice option and both ends of each range replace one key of a reference point
        (the first draw); pairs of choice keys are crossed too, so a combination that the
        sampler may draw (op "div" with a p that is not prime) is refused before any run.
        """
        rng = random.Random(0)
        for _, space in self.components():
            base = self._with_seeds({k: _draw(v, rng) for k, v in space.items()}, rng)
            options = {k: _extremes(v) for k, v in space.items()}
            for key, values in options.items():
                for value in values:
                    self._try({**base, key: value}, key)
            keys = sorted(k for k, v in options.items() if len(v) > 1)
            for a, b in itertools.combinations(keys, 2):
                for va, vb in itertools.product(options[a], options[b]):
                    self._try({**base, a: va, b: vb}, f"{a}/{b}")
            if "div" in options.get("op", []) or space.get("op") == "div":
                bad = [p for p in options.get("p", [base.get("p")]) if not _prime_or_range(p)]
                if bad:
                    raise SpecError(f"p must be prime when op 'div' can be drawn, got p={bad}")

    def _try(self, point: dict[str, Any], key: str) -> None:
        try:
            self.resolve(point)
        except SpecError as exc:
            raise SpecError(f"space key {key!r}: {exc}") from None


def run_id_of(family: str, config: Mapping[str, Any], every: int, max_samples: int) -> str:
    """A stable id from what determines the run: the same config is the same run."""
    blob = json.dumps(
        {"family": family, "config": config, "every": every, "max_samples": max_samples},
        sort_keys=True,
    )
    return f"{family}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def load_spec(path: str | Path) -> SweepSpec:
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}: not valid JSON: {exc}") from exc
    return SweepSpec.from_dict(raw)


# -- parsing helpers -------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _refuse_unknown(d: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(d) - known)
    if unknown:
        raise SpecError(f"unknown {where} key {unknown[0]!r} (known: {sorted(known)})")


def _check_space(space: Any, where: str, fields: set[str], sampler: str) -> dict[str, Any]:
    if not isinstance(space, Mapping):
        raise SpecError(f"{where} must be an object of config keys, got {space!r}")
    for key, value in space.items():
        if key not in fields or key in ("steps", "eval_every", "threads", "device"):
            allowed = sorted(fields - {"steps", "eval_every", "threads", "device"})
            raise SpecError(f"unknown {where} key {key!r} (config keys: {allowed})")
        _check_value(value, f"{where}.{key}", sampler)
    return dict(space)


def _check_value(value: Any, where: str, sampler: str) -> None:
    if isinstance(value, list):
        if not value:
            raise SpecError(f"{where} is an empty list: the space is empty")
        for v in value:
            if isinstance(v, dict):
                raise SpecError(f"{where}: lists hold constants; use a choice for distributions")
        return
    if not isinstance(value, dict):
        if value is None or isinstance(value, int | float | str | bool):
            return
        raise SpecError(f"{where} must be a constant, a list or a distribution, got {value!r}")
    if sampler == "grid":
        raise SpecError(f"{where}: a grid takes constants and lists, not distributions")
    kinds = [k for k in value if k in DIST_KINDS]
    if len(kinds) != 1:
        raise SpecError(f"{where} must name one distribution of {list(DIST_KINDS)}, got {value!r}")
    kind = kinds[0]
    _refuse_unknown(value, {kind} | ({"weights"} if kind == "choice" else set()), where)
    args = value[kind]
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise SpecError(f"{where}.choice must be a non-empty list: the space is empty")
        for i, option in enumerate(args):
            if isinstance(option, list):
                raise SpecError(f"{where}.choice[{i}] is a list; nest a choice instead")
            _check_value(option, f"{where}.choice[{i}]", sampler)
        weights = value.get("weights")
        if weights is not None and (
            not isinstance(weights, list)
            or len(weights) != len(args)
            or not all(_is_num(w) and w >= 0 for w in weights)
            or sum(weights) <= 0
        ):
            raise SpecError(
                f"{where}.weights must be {len(args)} numbers >= 0 with a positive sum, "
                f"got {weights!r}"
            )
        return
    if not (isinstance(args, list) and len(args) == 2 and all(_is_num(a) for a in args)):
        raise SpecError(f"{where}.{kind} must be [lo, hi], got {args!r}")
    lo, hi = args
    if not lo < hi and not (kind == "int" and lo == hi):
        raise SpecError(f"{where}.{kind} needs lo < hi, got {args!r}")
    if kind == "loguniform" and lo <= 0:
        raise SpecError(f"{where}.loguniform needs lo > 0, got {args!r}")
    if kind == "int" and not (_is_int(lo) and _is_int(hi)):
        raise SpecError(f"{where}.int needs integer bounds, got {args!r}")


def _check_mixture(mixture: Any, fields: set[str], sampler: str) -> tuple:
    if not isinstance(mixture, list | tuple):
        raise SpecError(f"mixture must be a list of {{weight, space}}, got {mixture!r}")
    out = []
    for i, comp in enumerate(mixture):
        where = f"mixture[{i}]"
        if not isinstance(comp, Mapping):
            raise SpecError(f"{where} must be an object {{weight, space}}, got {comp!r}")
        _refuse_unknown(comp, {"weight", "space"}, where)
        weight = comp.get("weight", 1.0)
        if not _is_num(weight) or weight < 0:
            raise SpecError(f"{where}.weight must be a number >= 0, got {weight!r}")
        out.append((float(weight), _check_space(comp.get("space", {}), where, fields, sampler)))
    if out and sum(w for w, _ in out) <= 0:
        raise SpecError("mixture weights are all 0: the space is empty")
    return tuple((w, s) for w, s in out if w > 0 or sampler == "grid")


def _check_holdout(holdout: Any, fields: set[str]) -> dict[str, list[Any]]:
    if not isinstance(holdout, Mapping):
        raise SpecError(f"holdout must be an object of config key -> list, got {holdout!r}")
    for key, values in holdout.items():
        if key not in fields:
            raise SpecError(f"unknown holdout key {key!r}")
        if not isinstance(values, list):
            raise SpecError(f"holdout.{key} must be a list, got {values!r}")
    return {k: list(v) for k, v in holdout.items()}


def _check_budget(budget: Any) -> Budget | int:
    if _is_int(budget):
        if budget <= 0:
            raise SpecError(f"budget must be > 0, got budget={budget!r}")
        return int(budget)
    if not isinstance(budget, Mapping):
        raise SpecError(f"budget must be an int or an object, got {budget!r}")
    _refuse_unknown(budget, BUDGET_KEYS, "budget")
    b = Budget(**budget)
    for key in ("k", "frac_power"):
        if not _is_num(getattr(b, key)) or getattr(b, key) < 0:
            raise SpecError(f"budget.{key} must be a number >= 0, got {getattr(b, key)!r}")
    for key in ("min", "max", "no_decay"):
        if not _is_int(getattr(b, key)) or getattr(b, key) <= 0:
            raise SpecError(f"budget.{key} must be an int > 0, got {getattr(b, key)!r}")
    if b.min > b.max:
        raise SpecError(f"budget.min must be <= budget.max, got {b.min} > {b.max}")
    return b


def _draw(value: Any, rng: random.Random) -> Any:
    if isinstance(value, list):
        return rng.choice(value)
    if not isinstance(value, dict):
        return value
    if "choice" in value:
        options = value["choice"]
        option = rng.choices(options, weights=value.get("weights"))[0]
        return _draw(option, rng)
    if "uniform" in value:
        lo, hi = value["uniform"]
        return rng.uniform(lo, hi)
    if "loguniform" in value:
        lo, hi = value["loguniform"]
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    lo, hi = value["int"]
    return rng.randint(lo, hi)


def _extremes(value: Any) -> list[Any]:
    """Every value a space entry can take that decides validity: options and range ends."""
    if isinstance(value, list):
        return list(value)
    if not isinstance(value, dict):
        return [value]
    if "choice" in value:
        return [x for option in value["choice"] for x in _extremes(option)]
    kind = next(k for k in DIST_KINDS if k in value)
    return list(value[kind])


def _prime_or_range(p: Any) -> bool:
    return not _is_int(p) or is_prime(p)
