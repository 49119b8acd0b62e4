"""What ``trainer.sweep.keep_heap`` does to a full-batch training step, side by side.

Two fresh single-thread processes train the same model from the same seed for ``--steps``
steps (a large corpus configuration by default, p = 97), one as glibc leaves it and one after
``keep_heap()``; each reports its best time per step over ``--repeats`` blocks, its minor page
faults per step, and a digest of its final weights, which must be identical. Fresh processes,
because glibc's own adaptive mmap threshold otherwise decides the "plain" side by whatever ran
before (it sometimes stops the page faults by itself).

    python benchmarks/keep_heap.py [--steps 60] [--repeats 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.report_io import write_report

CHILD = """
import hashlib, json, resource, sys, time
import torch, torch.nn.functional as F
from trainer.config import RunConfig
from trainer.sweep import keep_heap
from trainer.tasks import make_dataset
from trainer.train import build_model, build_optimizer
kept = keep_heap() if sys.argv[1] == "kept" else False
steps, repeats = int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1)
cfg = RunConfig(p=97, op="x2y2", frac=0.57, d_emb=32, d_hidden=128, depth=1, lr=3e-3, wd=1.0)
data = make_dataset(cfg.p, cfg.op, cfg.frac, data_seed=cfg.data_seed)
torch.manual_seed(0)
model = build_model(cfg)
opt = build_optimizer(model, cfg)
def step():
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(data.train_x), data.train_y).backward()
    opt.step()
for _ in range(10):
    step()
best, faults = float("inf"), []
for _ in range(repeats):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    best = min(best, (time.perf_counter() - t0) / steps)
    faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / steps)
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters()))
print(json.dumps({"kept": kept, "ms_per_step": 1e3 * best,
                  "page_faults_per_step": min(faults), "weights_sha256": digest.hexdigest()}))
"""


def side(name: str, steps: int, repeats: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, name, str(steps), str(repeats)],
        check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    return {"side": name, **json.loads(out.stdout.strip().splitlines()[-1])}


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    sides = [side(name, args.steps, args.repeats) for name in ("plain", "kept", "plain", "kept")]
    plain = min(s["ms_per_step"] for s in sides if s["side"] == "plain")
    kept = min(s["ms_per_step"] for s in sides if s["side"] == "kept")
    same = len({s["weights_sha256"] for s in sides}) == 1
    report = {"sides": sides, "speedup": plain / kept, "identical_weights": same}
    print("| side | ms/step | page faults/step | weights |")
    print("|---|---|---|---|")
    for s in sides:
        print(f"| {s['side']} | {s['ms_per_step']:.2f} | {s['page_faults_per_step']:.0f} | "
              f"{s['weights_sha256'][:12]} |")  # fmt: skip
    print(f"speed-up {report['speedup']:.2f}×, identical weights: {same}")
    write_report(args.json, report)
    if not same:
        raise SystemExit("keep_heap changed the weights")
    return report


if __name__ == "__main__":
    main()
