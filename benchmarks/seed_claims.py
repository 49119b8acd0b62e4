"""The seed papers' claims, measured on the corpus (v1 and v2): one command, one JSON.

    python benchmarks/seed_claims.py --corpus trainer/data/corpus_v1,trainer/data/corpus \\
        --out benchmarks/results/forecast/seed_claims.json

Seed 003 claims two things about *delay* (the gap ``t_grok - t_mem`` between fitting the
training set and generalizing):

1. **MLPs without embeddings** (one-hot inputs: corpus v2's ``onehot`` family, and corpus v1's
   MLPs with ``embedding: false``, drawn by the same sampler as those with one) generalize
   with less delay than the MLP with a learned embedding (seed 003 says it of addition:
   each corpus is compared over every operation and on addition alone);
2. **a larger embedding learning rate** (optimizer ``emb_lr10``: AdamW with the embedding's lr
   x 10) shortens the gap, against plain AdamW on the same family.

For every comparison the script reports, per group, the runs, the share that generalize
within the budget (``grokking`` or ``comprehension``), and over the runs that generalize the
median gap in steps and the median delay factor ``t_grok / t_mem`` (scale-free: a run with
half the learning rate takes twice the steps for both), each with a bootstrap 95 % interval
(2000 resamples, seeded), and the difference of the medians (B minus A) with its bootstrap
interval and a two-sided Mann-Whitney U p-value. The other claims of the seed papers (the
evaluation's :func:`grokwatch.forecast.evaluate.claims`: MC-dropout variance peak, change
points of test accuracy, test loss and weight norm, spectral entropy below 0.609) are
re-measured per family on every run with labels.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grokwatch.forecast.commands import _json_safe
from grokwatch.forecast.evaluate import claims
from grokwatch.forecast.replay import architecture_family, replay

GENERALIZED = ("grokking", "comprehension")
RESAMPLES = 2000
MIN_GENERALIZED = 5
"""Fewer runs that generalize in a group and its comparison's verdict is "too few runs" (a
bootstrap of the median of two gaps says nothing); its numbers are still reported."""


def _load(corpora: Sequence[str]) -> list[tuple[str, Any]]:
    from trainer.corpus import load

    out = []
    for c in corpora:
        version = "v1" if not (Path(c) / "corpus.json").exists() else _version(Path(c))
        out += [(version, r) for r in load(c) if r.labels.get("outcome")]
    return out


def _version(path: Path) -> str:
    meta = json.loads((path / "corpus.json").read_text())
    return f"v{meta.get('version', 1)}"


def _median_ci(x: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    if x.size == 0:
        return math.nan, math.nan, math.nan
    boot = np.median(rng.choice(x, size=(RESAMPLES, x.size), replace=True), axis=1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return float(np.median(x)), float(lo), float(hi)


def _diff_ci(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    if a.size == 0 or b.size == 0:
        return {"median_b_minus_a": math.nan, "low": math.nan, "high": math.nan, "p": math.nan}
    from scipy.stats import mannwhitneyu

    ba = np.median(rng.choice(a, size=(RESAMPLES, a.size)), axis=1)
    bb = np.median(rng.choice(b, size=(RESAMPLES, b.size)), axis=1)
    lo, hi = np.quantile(bb - ba, [0.025, 0.975])
    p = float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
    return {
        "median_b_minus_a": float(np.median(b) - np.median(a)),
        "low": float(lo),
        "high": float(hi),
        "p": p,
    }


def _group(runs: Sequence[Any], rng: np.random.Generator) -> dict[str, Any]:
    gen = [r for r in runs if r.labels["outcome"] in GENERALIZED and r.labels.get("t_grok")]
    gaps = np.array([r.labels["t_grok"] - (r.labels.get("t_mem") or 0) for r in gen], float)
    factor = np.array([r.labels["t_grok"] / max(r.labels.get("t_mem") or 1, 1) for r in gen], float)
    g, f = _median_ci(gaps, rng), _median_ci(factor, rng)
    outcomes: dict[str, int] = {}
    for r in runs:
        outcomes[r.labels["outcome"]] = outcomes.get(r.labels["outcome"], 0) + 1
    return {
        "n_runs": len(runs),
        "n_generalized": len(gen),
        "generalized_share": len(gen) / len(runs) if runs else math.nan,
        "outcomes": outcomes,
        "median_gap": g[0],
        "gap_ci": [g[1], g[2]],
        "median_delay_factor": f[0],
        "delay_factor_ci": [f[1], f[2]],
        "_gaps": gaps,
        "_factor": factor,
    }


def compare(
    name: str,
    runs: Sequence[Any],
    a: tuple[str, Callable[[Any], bool]],
    b: tuple[str, Callable[[Any], bool]],
    claim: str,
    seed: int = 0,
) -> dict[str, Any]:
    """Group A against group B over ``runs`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    ga = _group([r for r in runs if a[1](r)], rng)
    gb = _group([r for r in runs if b[1](r)], rng)
    out = {
        "name": name,
        "claim": claim,
        "a": a[0],
        "b": b[0],
        "groups": {a[0]: ga, b[0]: gb},
        "gap_difference": _diff_ci(ga["_gaps"], gb["_gaps"], rng),
        "delay_factor_difference": _diff_ci(ga["_factor"], gb["_factor"], rng),
    }
    for g in (ga, gb):
        del g["_gaps"], g["_factor"]
    d = out["gap_difference"]
    # the claim (B has less delay than A) is shown when the whole interval is below 0
    few = min(ga["n_generalized"], gb["n_generalized"]) < MIN_GENERALIZED
    if few or not math.isfinite(d["high"]):
        out["verdict"] = "too few runs"
    elif d["high"] < 0:
        out["verdict"] = "holds"
    elif d["low"] > 0:
        out["verdict"] = "opposite"
    else:
        out["verdict"] = "not shown"
    return out


def _max_test_accuracy(r: Any) -> float:
    """The run's best test accuracy within its budget."""
    j = list(r.columns).index("test_accuracy")
    budget = r.labels.get("budget") or np.inf
    keep = np.asarray(r.steps) <= budget
    values = np.asarray(r.values, dtype=float)[keep, j]
    return float(np.nanmax(values)) if np.isfinite(values).any() else math.nan


def _opt(r: Any) -> str:
    return str(r.config.get("optimizer") or "adamw")


def delay_comparisons(pool: Sequence[Any], label: str) -> list[dict[str, Any]]:
    """Seed 003's two delay claims on the runs of ``pool`` (one corpus version, ``label``):
    embedding against one-hot MLPs over every operation, then on addition alone (``op:
    add``, the operation seed 003 states the claim for), then AdamW against ``emb_lr10`` on
    each family that has both."""
    comps = []
    no_emb = "MLPs without embeddings generalize with less delay"
    emb_lr = "a larger embedding learning rate shortens the gap"
    mlps = [r for r in pool if architecture_family(r) in ("mlp", "onehot")]
    addition = [r for r in mlps if r.config.get("op") == "add"]
    for what, sub in (("", mlps), (", addition", addition)):
        if sub:
            comps.append(
                compare(
                    f"embedding vs one-hot MLP{what} ({label})",
                    sub,
                    ("embedding", lambda r: architecture_family(r) == "mlp"),
                    ("one-hot", lambda r: architecture_family(r) == "onehot"),
                    no_emb,
                )
            )
    for fam in ("mlp", "transformer", "perm"):
        sub = [r for r in pool if architecture_family(r) == fam]
        if any(_opt(r) == "emb_lr10" for r in sub):
            comps.append(
                compare(
                    f"AdamW vs embedding lr x 10, {fam} ({label})",
                    sub,
                    ("adamw", lambda r: _opt(r) == "adamw"),
                    ("emb_lr10", lambda r: _opt(r) == "emb_lr10"),
                    emb_lr,
                )
            )
    return comps


def seed_claims(corpora: Sequence[str]) -> dict[str, Any]:
    runs = _load(corpora)
    v1 = [r for v, r in runs if v == "v1"]
    v2 = [r for v, r in runs if v != "v1"]
    comps = delay_comparisons(v1, "v1") + delay_comparisons(v2, "v2")
    others: dict[str, Any] = {}
    for fam in sorted({architecture_family(r) for r in v2}):
        sub = [r for r in v2 if architecture_family(r) == fam]
        others[fam] = {"n_runs": len(sub), **claims([replay(r) for r in sub])}
    near: dict[str, Any] = {}
    for fam in sorted({architecture_family(r) for _, r in runs}):
        neg = [r for _, r in runs if architecture_family(r) == fam]
        neg = [r for r in neg if r.labels["outcome"] in ("memorization", "confusion")]
        best = [_max_test_accuracy(r) for r in neg]
        near[fam] = {
            "n_negative": len(neg),
            "max_test_accuracy_0.8_to_0.9": int(sum(0.8 <= b < 0.9 for b in best)),
            "max_test_accuracy_below_0.5": int(sum(b < 0.5 for b in best)),
        }
    return {
        "corpora": list(corpora),
        "near_misses": near,
        "n_runs": {"v1": len(v1), "v2": len(v2)},
        "comparisons": comps,
        "other_claims_v2": others,
        "resamples": RESAMPLES,
    }


def format_claims(data: dict[str, Any]) -> str:
    """The comparisons and the other claims as markdown tables."""
    rows = [
        "| comparison (A → B) | runs A / B | generalize A / B | median gap A [95 % CI] | "
        "median gap B [95 % CI] | B − A [95 % CI] | p (Mann-Whitney) | delay factor A / B | "
        "verdict |",
        "|---" * 9 + "|",
    ]
    for c in data["comparisons"]:
        a, b = c["groups"][c["a"]], c["groups"][c["b"]]
        d = c["gap_difference"]

        def gap(g: dict[str, Any]) -> str:
            if not math.isfinite(g["median_gap"] or math.nan):
                return "—"
            return f"{g['median_gap']:.0f} [{g['gap_ci'][0]:.0f}, {g['gap_ci'][1]:.0f}]"

        diff = (
            f"{d['median_b_minus_a']:+.0f} [{d['low']:+.0f}, {d['high']:+.0f}]"
            if d["p"] is not None and math.isfinite(d["p"])
            else "—"
        )
        holds = c["verdict"] if c["verdict"] == "holds" else f"**{c['verdict']}**"
        rows.append(
            f"| {c['name']} | {a['n_runs']} / {b['n_runs']} | "
            f"{a['generalized_share']:.2f} / {b['generalized_share']:.2f} | {gap(a)} | {gap(b)} | "
            f"{diff} | {_p(d['p'])} | {_num(a['median_delay_factor'])} / "
            f"{_num(b['median_delay_factor'])} | {holds} |"
        )
    lines = ["\n".join(rows), ""]
    lines.append(
        "| family (v2) | runs | MC-dropout peak before t_grok | test-loss turn before t_grok "
        "(lead × gap) | test-accuracy turn before t_grok | weight-norm fall before t_grok | "
        "spectral entropy < 0.609: grokkers / others |"
    )
    lines.append("|---" * 7 + "|")
    for fam, o in data["other_claims_v2"].items():
        mc = o["mc_dropout_peak_before_t_grok"]
        tl = o["change_point_test_loss_down_before_t_grok"]
        ta = o["change_point_test_accuracy_up_before_t_grok"]
        wn = o["change_point_weight_norm_down_before_t_grok"]
        se = o["spectral_entropy_below_0.609"]
        lines.append(
            f"| {fam} | {o['n_runs']} | {_num(mc['fraction_before'])} of {mc['n']} | "
            f"{_num(tl['fraction'])} ({_num(tl['median_lead_fraction'])}) of {tl['n']} | "
            f"{_num(ta['fraction'])} | {_num(wn['fraction'])} | "
            f"{_num(se['grokking_before_t_grok'])} / {_num(se['negatives_ever'])} |"
        )
    lines += [
        "",
        "| family | runs that do not grok (v1 + v2) | best test accuracy 0.8–0.9 (near misses of "
        "the 0.9 threshold) | below 0.5 |",
        "|---|---|---|---|",
    ]
    for fam, n in (data.get("near_misses") or {}).items():
        lines.append(
            f"| {fam} | {n['n_negative']} | {n['max_test_accuracy_0.8_to_0.9']} | "
            f"{n['max_test_accuracy_below_0.5']} |"
        )
    return "\n".join(lines)


def _num(v: Any) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:.2f}"


def _p(v: Any) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    return f"{v:.1e}" if v < 1e-3 else f"{v:.3f}"


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default="trainer/data/corpus_v1,trainer/data/corpus")
    ap.add_argument("--out", default="benchmarks/results/forecast/seed_claims.json")
    ap.add_argument("--note", default="", help="where the corpora came from (saved in the JSON)")
    args = ap.parse_args(argv)
    corpora = [c for c in args.corpus.split(",") if c and Path(c).exists()]
    data = seed_claims(corpora)
    data["note"] = args.note
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(_json_safe(data), indent=1) + "\n")
    print(format_claims(json.loads(Path(args.out).read_text())))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
