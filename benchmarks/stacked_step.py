"""Why stacking gains little on CPU: one training step of a stack of runs, timed several ways.

Takes the first ``mlp`` stack of the corpus-v2 plan (the runs `benchmarks/corpus_throughput.py`
also trains), builds their models and full-batch training sets as `trainer.stacked` does, and
times one forward + backward of all of them, interleaved, on one thread:

- **vmap**: the corpus path (``torch.func.functional_call`` under ``vmap``);
- **bmm**: the same loss written by hand on the stacked parameters (batched matmuls and
  embedding gathers, no ``vmap``), checked equal to the vmap losses first.

Next to them: the step's FLOPs (``torch.utils.flop_counter``, summed over the runs) and the
single-thread matmul peak measured in the same invocation, so the JSON says how far from
compute-bound the step is.

Then, for the first stack of every family (``families`` in the JSON), the corpus path's step
before and after the loss moved out of ``vmap`` (``trainer.stacked.stacked_losses``): the whole
per-run loss under ``vmap`` (cross-entropy then runs as a Python decomposition) against the
forward under ``vmap`` and the loss once on all rows, interleaved, each checked bitwise equal
(losses and gradients) to the other first (both with the model's own forward).

Last, for the transformer's stacks of the throughput benchmark (``stacked_form`` in the JSON):
the corpus path's step with the model's own forward against its stacked form
(``trainer.families.Transformer.stacked_forward``, what a stack trains since grokwatch
corpus v2's transformer runs were trained again), interleaved, the losses first compared
(largest relative difference: the two round differently).

    python -m benchmarks.stacked_step --json benchmarks/results/corpus/stacked_step.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from benchmarks.corpus_throughput import bench_tasks, matmul_peak, step_flops
from benchmarks.report_io import write_report
from trainer.families import FAMILIES, build
from trainer.stacked import _pad, for_stacking, stacked_losses

Params = dict[str, torch.Tensor]


def stacked_family(
    family: str, runs: int, index: int = 0
) -> tuple[Any, Params, torch.Tensor, torch.Tensor, torch.Tensor, Any]:
    """The family's stack number `index` in the throughput benchmark: (template model, stacked
    params, x (R, N, ...), y (R, N), row weights (R, N), per-row loss), padded as the corpus path
    pads it."""
    models, datas = [], []
    for task in bench_tasks([family], runs, 1, stacks=index + 1)[index * runs :]:
        config = FAMILIES[family].config_cls.from_dict(task.config)
        torch.manual_seed(config.seed)
        model, data, loss_fn = build(config)
        models.append(model)
        datas.append(data)
    params, _ = stack_module_state(models)
    n = max(len(d.train_y) for d in datas)
    x, y = _pad([d.train_x for d in datas], n), _pad([d.train_y for d in datas], n)
    w = torch.zeros(runs, n)
    for i, d in enumerate(datas):
        w[i, : len(d.train_y)] = 1.0 / len(d.train_y)
    return models[0], params, x, y, w, loss_fn


def bmm_loss(p: Params, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The depth-1 factorized MLP of `trainer.model` on stacked parameters, by hand."""
    table = p["embed.weight"]  # (R, p, d)
    runs, modulus, _ = table.shape
    w_a, w_b = p["hidden.weight"].chunk(2, dim=2)  # (R, H, d) each
    hidden = w_a.shape[1]
    proj_a = torch.bmm(table, w_a.transpose(1, 2)).reshape(runs * modulus, hidden)
    proj_b = torch.bmm(table, w_b.transpose(1, 2)).reshape(runs * modulus, hidden)
    offset = (torch.arange(runs) * modulus)[:, None]  # (R, 1): run r's rows in the flat table
    pre = F.embedding(x[..., 0] + offset, proj_a) + F.embedding(x[..., 1] + offset, proj_b)
    h = torch.relu(pre + p["hidden.bias"][:, None, :])  # (R, N, H)
    logits = torch.baddbmm(p["out.bias"][:, None, :], h, p["out.weight"].transpose(1, 2))
    nll = torch.logsumexp(logits, -1) - logits.gather(-1, y[..., None])[..., 0]  # (R, N)
    return (nll * w).sum(1)  # (R,)


def whole_loss_under_vmap(template: Any, loss_fn: Any) -> Any:
    """The corpus path's loss before `stacked_losses`: the whole per-run loss under `vmap`."""

    def run_loss(p: Params, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (loss_fn(functional_call(template, p, (x,)), y) * w).sum()

    return vmap(run_loss)


def family_step(family: str, runs: int, steps: int, repeats: int, peak: float) -> dict[str, Any]:
    """One full-batch step of the family's first stack: before / after, bitwise checked."""
    template, params, x, y, w, loss_fn = stacked_family(family, runs)
    sides = {"whole loss under vmap": whole_loss_under_vmap(template, loss_fn),
             "forward under vmap (ours)": stacked_losses(template, loss_fn)}  # fmt: skip
    got = []
    for loss in sides.values():
        for q in params.values():
            q.grad = None
        value = loss(params, x, y, w)
        value.sum().backward()
        got.append((value.detach(), [q.grad.clone() for q in params.values()]))
    (l0, g0), (l1, g1) = got
    bitwise = torch.equal(l0, l1) and all(torch.equal(a, b) for a, b in zip(g0, g1, strict=True))
    if not bitwise:
        raise SystemExit(f"{family}: the two formulations differ")
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(repeats):
        for name, loss in sides.items():
            times[name].append(time_step(loss, params, (x, y, w), steps))
    flops = sum(step_flops(t) for t in bench_tasks([family], runs, 1))
    return {
        "runs": runs,
        "rows_per_run": int(x.shape[1]),
        "step_gflop": flops / 1e9,
        "compute_bound_ms": flops / (peak * 1e9) * 1e3,
        "bitwise_equal": bitwise,
        "ms_per_step": {k: statistics.median(v) for k, v in times.items()},
        "ms_per_step_all": times,
    }


def stacked_form_step(runs: int, steps: int, repeats: int, index: int) -> dict[str, Any]:
    """One full-batch step of the transformer's stack `index`, its own forward against its
    stacked form, interleaved (the rows of a mini-batch stack are all its training rows here)."""
    template, params, x, y, w, loss_fn = stacked_family("transformer", runs, index)
    sides = {"own forward": stacked_losses(template, loss_fn),
             "stacked form (ours)": stacked_losses(for_stacking(template), loss_fn)}  # fmt: skip
    own, ours = (loss(params, x, y, w).detach() for loss in sides.values())
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(repeats):
        for name, loss in sides.items():
            times[name].append(time_step(loss, params, (x, y, w), steps))
    ms = {k: statistics.median(v) for k, v in times.items()}
    return {
        "runs": runs,
        "rows_per_run": int(x.shape[1]),
        "shape": {
            "n_layers": len(template.early) + 1,
            "n_heads": template.n_heads,
            "d_model": int(template.pos.weight.shape[1]),
        },
        "layernorm": not isinstance(template.ln1, torch.nn.Identity),
        "loss_max_rel_diff": ((ours - own).abs() / own.abs()).max().item(),
        "ms_per_step": ms,
        "ms_per_step_all": times,
        "gain": ms["own forward"] / ms["stacked form (ours)"],
    }


def time_step(loss: Any, params: Params, args: tuple[torch.Tensor, ...], steps: int) -> float:
    """Milliseconds per forward + backward of the whole stack."""
    t0 = time.perf_counter()
    for _ in range(steps):
        for q in params.values():
            q.grad = None
        loss(params, *args).sum().backward()
    return (time.perf_counter() - t0) / steps * 1e3


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50, help="steps per timing")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--families", default="mlp,onehot,perm,transformer,digits,parity")
    parser.add_argument("--transformer-stacks", type=int, default=2,
                        help="the transformer's stacks of the throughput benchmark to time "
                        "with its own forward and its stacked form")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)

    template, params, x, y, w, loss_fn = stacked_family("mlp", args.runs)
    if template.depth != 1 or template.embed is None:
        raise SystemExit("the first mlp stack is not the depth-1 embedded MLP bmm_loss writes")
    with_vmap = whole_loss_under_vmap(template, loss_fn)
    gap = (with_vmap(params, x, y, w) - bmm_loss(params, x, y, w)).abs().max().item()
    if gap > 1e-4:
        raise SystemExit(f"bmm and vmap losses differ by {gap}")
    flops = sum(step_flops(t) for t in bench_tasks(["mlp"], args.runs, 1))
    peak = matmul_peak()
    times: dict[str, list[float]] = {"vmap": [], "bmm": []}
    for loss in (with_vmap, bmm_loss):  # warm-up
        time_step(loss, params, (x, y, w), 3)
    for _ in range(args.repeats):  # interleaved: both sides see the same machine
        times["vmap"].append(time_step(with_vmap, params, (x, y, w), args.steps))
        times["bmm"].append(time_step(bmm_loss, params, (x, y, w), args.steps))
    compute_ms = flops / (peak * 1e9) * 1e3
    report = {
        "runs": args.runs,
        "rows_per_run": int(x.shape[1]),
        "shape": {
            "p": int(params["embed.weight"].shape[1]),
            "d_emb": int(params["embed.weight"].shape[2]),
            "d_hidden": int(params["hidden.weight"].shape[1]),
        },
        "step_gflop": flops / 1e9,
        "matmul_peak_gflops_per_thread": peak,
        "compute_bound_ms": compute_ms,
        "loss_gap": gap,
        "ms_per_step": {k: statistics.median(v) for k, v in times.items()},
        "ms_per_step_all": times,
        "bmm_over_vmap": statistics.median(
            b / v for b, v in zip(times["bmm"], times["vmap"], strict=True)
        ),
    }
    report["families"] = {}
    for family in args.families.split(","):
        row = family_step(family, args.runs, max(args.steps // 5, 5), args.repeats, peak)
        report["families"][family] = row
        print(f"{family}: {row['runs']} × {row['rows_per_run']} rows, "
              f"{row['compute_bound_ms']:.1f} ms at the matmul peak; "
              + ", ".join(f"{k} {v:.1f} ms" for k, v in row["ms_per_step"].items()))  # fmt: skip
    report["stacked_form"] = []
    for index in range(args.transformer_stacks):
        row = stacked_form_step(args.runs, max(args.steps // 5, 5), args.repeats, index)
        report["stacked_form"].append(row)
        times = ", ".join(f"{k} {v:.1f} ms" for k, v in row["ms_per_step"].items())
        diff = row["loss_max_rel_diff"]
        print(f"transformer stack {index} ({row['shape']}, layernorm {row['layernorm']}): "
              f"{times}, gain {row['gain']:.2f}×, losses within {diff:.1e}")  # fmt: skip
    ms = report["ms_per_step"]
    print(f"stack of {args.runs} mlp runs: {flops / 1e9:.3f} GFLOP per step = {compute_ms:.1f} ms "
          f"at the matmul peak ({peak:.0f} GFLOP/s); vmap {ms['vmap']:.1f} ms, "
          f"bmm {ms['bmm']:.1f} ms (bmm/vmap {report['bmm_over_vmap']:.2f})")  # fmt: skip
    write_report(args.json, report)
    return report


if __name__ == "__main__":
    main()
