"""Do two versions of grokwatch compute the same features, change points and forecasts?

A speed-up of the detector or the forecaster must not change a single number: the shipped
model was fitted, and the evaluation in docs/evaluation.md computed, with the features as they
were. This script records, for a checkout, everything those numbers flow into, and compares
two records exactly (every float by its bytes, so a NaN equals a NaN of the same sign and
nothing else):

- 60 corpus runs replayed offline (``replay``: features, contexts, change points) at the
  corpus cadence and thinned to every 500 steps;
- 30 of them fed online to ``GrokRunForecaster.update_many`` in batches of 1, 7 and 100, with values
  made absent, NaN, infinite, negative or ``None`` at random, the step loss swapped in for the
  loss, duplicates and late points: every forecast, new change point and feature vector;
- the same runs through ``RunDetector.update_many`` in batches of 1, 10 and 500, with the
  shipped forecaster and rule-based: every decision, phase change count and the events.

Usage, with the older version checked out next to this one (``git worktree add``)::

    (cd OLD && python /path/to/benchmarks/equivalence.py record /tmp/old.pkl)
    python benchmarks/equivalence.py record /tmp/new.pkl
    python benchmarks/equivalence.py compare /tmp/old.pkl /tmp/new.pkl

``record`` imports grokwatch from the current directory (run it from the checkout's root) and
reads corpus v1 from ``trainer/data/corpus_v1``. ``compare`` prints every difference and exits
1 if there is one.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import pickle
import random
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np

Points = list[tuple[int, dict[str, Any]]]


def _points(run: Any, seed: int, measures: frozenset[str]) -> Points:
    """The run's evaluations with bad input sprinkled in (see the module docstring)."""
    g = random.Random(seed)
    cols = [(name, j) for j, name in enumerate(run.columns) if name in measures]
    pts: Points = []
    for i, step in enumerate(run.steps):
        values: dict[str, Any] = {}
        for name, j in cols:
            v: Any = float(run.values[i, j])
            u = g.random()
            if u < 0.03:
                continue  # absent
            if u < 0.05:
                v = math.nan
            elif u < 0.06:
                v = math.inf
            elif u < 0.07:
                v = -abs(v)
            elif u < 0.075:
                v = None
            values[name] = v
        if g.random() < 0.05:
            values["train_loss_step"] = values.pop("train_loss", 1.0)
        pts.append((int(step), values))
    for _ in range(3):  # duplicates, out of order
        k = g.randrange(len(pts))
        pts.insert(g.randrange(len(pts)), pts[k])
    return pts


def record(out: Path) -> int:
    sys.path.insert(0, str(Path.cwd()))
    from grokwatch.detector import RunDetector
    from grokwatch.forecast.features import INPUT_MEASURES
    from grokwatch.forecast.io import load_default
    from trainer.corpus import load

    try:
        from grokwatch.forecast.replay import replay
    except ImportError:  # versions before forecast/replay.py
        from grokwatch.forecast.training import replay  # type: ignore[attr-defined,no-redef]

    model = load_default()
    res: dict[tuple[Any, ...], Any] = {}
    runs = random.Random(1).sample(list(load("trainer/data/corpus_v1")), 60)
    for r in runs:
        rp = replay(r)
        contexts = [
            (c.step, c.n_points, c.t_grok, c.phase, c.missing, c.non_finite) for c in rp.contexts
        ]
        res[("replay", r.run_id)] = (
            rp.X,
            contexts,
            [dataclasses.astuple(c) for c in rp.change_points],
        )
        res[("replay500", r.run_id)] = (replay(r, cadence=500).X,)
    for r in runs[:30]:
        budget = int(r.labels.get("budget") or 5000)
        for seed, size in ((0, 1), (1, 7), (2, 100)):
            pts = _points(r, seed, INPUT_MEASURES)
            f = model.start(budget=budget)
            outs = []
            for i in range(0, len(pts), size):
                fc = f.update_many(pts[i : i + size])
                outs.append((fc, tuple(f.new_change_points), f.state.vector()))
            res[("online", r.run_id, seed, size)] = (outs, list(f.change_points))
        for seed, size in ((3, 1), (4, 10), (5, 500)):
            pts = _points(r, seed, INPUT_MEASURES)
            for forecaster in ("default", None):
                d = RunDetector(budget=budget, forecaster=forecaster)
                decisions = []
                for i in range(0, len(pts), size):
                    dec = d.update_many(pts[i : i + size])
                    f = dec.forecast
                    decisions.append((
                        dec.step, dec.phase, dec.reason, dec.message, d.phase_changes,
                        None if f is None else dataclasses.astuple(f),
                        [dataclasses.astuple(c) for c in dec.change_points],
                        dataclasses.astuple(d.events),
                    ))  # fmt: skip
                res[("detector", r.run_id, seed, size, forecaster)] = decisions
    with open(out, "wb") as fh:
        pickle.dump(res, fh)
    import grokwatch

    print(f"{len(res)} cases recorded in {out} (grokwatch from {Path(grokwatch.__file__).parent})")
    return 0


def _same(a: Any, b: Any, path: tuple[Any, ...], diffs: list[str]) -> None:
    """Exactly: floats and float arrays by their bytes (a NaN's sign and -0.0 count)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.dtype != b.dtype or a.tobytes() != b.tobytes():
            diffs.append(f"{path}: arrays differ")
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            diffs.append(f"{path}: {len(a)} vs {len(b)} items")
        else:
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                _same(x, y, (*path, i), diffs)
    elif isinstance(a, float) and isinstance(b, float):
        if struct.pack("<d", a) != struct.pack("<d", b):
            diffs.append(f"{path}: {a!r} vs {b!r}")
    elif type(a) is not type(b) or a != b:
        diffs.append(f"{path}: {a!r:.200} vs {b!r:.200}")


def compare(old: Path, new: Path) -> int:
    with open(old, "rb") as fa, open(new, "rb") as fb:
        a, b = pickle.load(fa), pickle.load(fb)
    diffs: list[str] = []
    if a.keys() != b.keys():
        diffs.append(f"different cases: {sorted(set(a) ^ set(b), key=repr)[:5]}")
    for key in a.keys() & b.keys():
        _same(a[key], b[key], (key,), diffs)
    for line in diffs[:50]:
        print(line)
    print(f"{len(a)} cases, {len(diffs)} differences")
    return 1 if diffs else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="record this checkout's numbers")
    rec.add_argument("out", type=Path)
    cmp = sub.add_parser("compare", help="compare two records exactly")
    cmp.add_argument("old", type=Path)
    cmp.add_argument("new", type=Path)
    args = parser.parse_args()
    sys.exit(record(args.out) if args.command == "record" else compare(args.old, args.new))


if __name__ == "__main__":
    main()
