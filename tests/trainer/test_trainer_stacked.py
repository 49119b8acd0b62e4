"""Stacked training (`trainer.stacked`) equals one-run-at-a-time training within float rounding,
for every family and optimizer; runs leave a stack at their own budget; the sweep plans stacks
so that every family is in a partial corpus.

Tolerance: after 30 steps every final parameter tensor of a stacked run is within 1e-5 × its
largest magnitude of the same run trained alone (measured: ≤ 1e-6). The stacked path rounds
differently (the loss is a 1/n-weighted sum over padded rows, the update is written with
per-run factors), and training is chaotic enough that over hundreds of steps at a large
learning rate those rounding differences grow (2 % after 60 steps with a 10× embedding lr of
3e-2), so the comparison is made over a short horizon where it means "the same arithmetic".
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainer.execution import pending_stacks, stack_rows
from trainer.families import FAMILIES, build, train_size
from trainer.runner import RunResult
from trainer.spec import RunTask, run_id_of
from trainer.stacked import stack_key, train_stack
from trainer.sweep import plan_stacks

STEPS = 30
TOLERANCE = 1e-5


def task(family: str, every: int = 10, **config: Any) -> RunTask:
    resolved = FAMILIES[family].config_cls.from_dict({"steps": STEPS, **config}).to_dict()
    return RunTask(
        run_id=run_id_of(family, resolved, every, 256),
        spec="test",
        family=family,
        split="train",
        config=resolved,
        every=every,
        tail=0.5,
        tail_min=500,
        max_samples=256,
    )


CASES: dict[str, list[dict[str, Any]]] = {
    "mlp": [
        {"p": 23, "frac": 0.5, "lr": 3e-3, "seed": 1, "d_emb": 16, "d_hidden": 32},
        {"p": 23, "frac": 0.4, "lr": 2e-3, "seed": 2, "d_emb": 16, "d_hidden": 32,
         "optimizer": "grokfast", "init_scale": 2.0, "op": "mul"},
        {"p": 23, "frac": 0.7, "lr": 3e-3, "seed": 3, "d_emb": 16, "d_hidden": 32,
         "optimizer": "emb_lr10", "wd": 0.0},
    ],
    "onehot": [
        {"p": 23, "frac": 0.5, "seed": 1, "d_hidden": 32, "embedding": False},
        {"p": 23, "frac": 0.3, "seed": 2, "d_hidden": 32, "embedding": False, "wd": 0.3},
    ],
    "transformer": [
        {"p": 23, "seed": 1, "d_model": 16, "n_heads": 2, "d_mlp": 32, "n_layers": 2,
         "layernorm": True, "batch_size": 32},
        {"p": 23, "seed": 2, "d_model": 16, "n_heads": 2, "d_mlp": 32, "n_layers": 2,
         "layernorm": True, "batch_size": 32, "optimizer": "grokfast", "frac": 0.7},
    ],
    "digits": [
        {"n_train": 100, "seed": 1, "width": 32, "loss": "ce", "optimizer": "sgd", "lr": 0.01,
         "wd": 0.01},
        {"n_train": 150, "seed": 2, "width": 32, "loss": "ce", "optimizer": "sgd", "lr": 0.02,
         "momentum": 0.5},
    ],
    "parity": [
        {"n_bits": 16, "k": 3, "n_train": 120, "n_test": 50, "seed": 1, "width": 32},
        {"n_bits": 16, "k": 4, "n_train": 200, "n_test": 50, "seed": 2, "width": 32,
         "init_scale": 2.0},
    ],
    "perm": [
        {"n": 4, "seed": 1, "d_emb": 16, "d_hidden": 32, "optimizer": "emb_lr10"},
        {"n": 4, "seed": 2, "d_emb": 16, "d_hidden": 32, "frac": 0.3, "lr": 3e-3},
    ],
}  # fmt: skip


def one_at_a_time(t: RunTask) -> dict[str, torch.Tensor]:
    """Final parameters of the run trained alone, by the family's own loop (no agent)."""
    family = FAMILIES[t.family]
    config = family.config_cls.from_dict(t.config)
    seen: dict[str, torch.nn.Module] = {}

    class Quiet:
        def step(self, step: int, *, loss: torch.Tensor) -> Any:
            return type("D", (), {"should_stop": False})()

        def close(self) -> None:
            pass

    def factory(model: torch.nn.Module, data: Any, cfg: Any) -> Quiet:
        seen["model"] = model
        return Quiet()

    family.train(config, agent_factory=factory)
    return {n: p.detach() for n, p in seen["model"].named_parameters()}


@pytest.mark.parametrize("family", sorted(CASES))
def test_stacked_training_equals_one_run_at_a_time(family: str) -> None:
    tasks = [task(family, **c) for c in CASES[family]]
    assert len({stack_key(t) for t in tasks}) == 1
    weights: dict[str, dict[str, torch.Tensor]] = {}
    results = train_stack(tasks, weights=weights)
    assert [r.status for r in results] == ["ok"] * len(tasks), [r.error for r in results]
    for t in tasks:
        alone = one_at_a_time(t)
        stacked = weights[t.run_id]
        assert stacked.keys() == alone.keys()
        for name, value in alone.items():
            scale = value.abs().max().item() + 1e-12
            diff = (stacked[name] - value).abs().max().item() / scale
            assert diff <= TOLERANCE, (t.config, name, diff)
            assert not torch.equal(stacked[name], torch.zeros_like(value))


def test_runs_leave_the_stack_at_their_own_budget_with_their_agent_history() -> None:
    tasks = [
        task("perm", n=4, seed=1, d_emb=16, d_hidden=32, steps=20),
        task("perm", n=4, seed=2, d_emb=16, d_hidden=32, steps=40),
    ]
    results: list[RunResult] = train_stack(tasks)
    by_id = {r.task.run_id: r for r in results}
    assert [by_id[t.run_id].steps_run for t in tasks] == [20, 40]
    short, long = (by_id[t.run_id] for t in tasks)
    assert list(short.steps) == [1, 10, 20] and list(long.steps) == [1, 10, 20, 30, 40]
    assert "test_accuracy" in long.columns and "grad_weight_cosine" in long.columns
    assert long.labels["outcome"] in ("grokking", "comprehension", "memorization", "confusion")
    # the same run alone is measured the same way (its agent sees the same weights)
    alone = train_stack([tasks[1]])[0]
    col = long.columns.index("train_loss")
    assert alone.values[:, col] == pytest.approx(long.values[:, col], rel=1e-4)


def test_a_stack_of_mixed_shapes_fails_every_run_with_the_reason() -> None:
    tasks = [task("perm", n=4, d_emb=16), task("perm", n=4, d_emb=32)]
    results = train_stack(tasks)
    assert [r.status for r in results] == ["failed", "failed"]
    assert "stack_key" in results[0].error


def test_plan_stacks_groups_by_shape_and_lets_families_take_turns() -> None:
    tasks = [task("perm", n=4, d_emb=16, seed=s) for s in range(5)]
    tasks += [task("perm", n=4, d_emb=32, seed=s) for s in range(2)]
    tasks += [task("parity", n_bits=16, n_train=100, n_test=50, seed=s) for s in range(3)]
    stacks = plan_stacks(tasks, 2)
    assert sorted(t.run_id for s in stacks for t in s) == sorted(t.run_id for t in tasks)
    assert all(len(s) <= 2 and len({stack_key(t) for t in s}) == 1 for s in stacks)
    # the first two stacks come from two different families
    assert {stacks[0][0].family, stacks[1][0].family} == {"perm", "parity"}


def test_a_stacked_sweep_writes_a_v2_corpus_of_every_run_with_all_probes(tmp_path) -> None:
    from trainer import corpus
    from trainer.executors import InlineExecutor
    from trainer.spec import SweepSpec
    from trainer.sweep import sweep

    spec = SweepSpec.from_dict({
        "name": "tiny-v2", "family": "mlp", "role": "train", "n_runs": 4, "every": 25,
        "budget": 50, "space": {"p": 7, "frac": [0.5, 0.7], "lr": 1e-2, "d_emb": 8,
                                 "d_hidden": 16},
    })  # fmt: skip
    report = sweep([spec], tmp_path, executor=InlineExecutor(), progress=False, stack=4)
    assert (report.done, report.failed) == (4, 0)
    stored = corpus.load(tmp_path, version=2)
    assert sorted(r.run_id for r in stored) == sorted(t.run_id for t in spec.tasks())
    for run in stored:
        assert run.meta["format_version"] == 2 and run.meta["steps_run"] == 50
        assert set(run.meta["agent"]["probe_status"].values()) == {"ok"}
    # resumed: nothing left to do; a v1 sweep may not write into the v2 directory
    assert sweep([spec], tmp_path, executor=InlineExecutor(), progress=False, stack=4).done == 0
    with pytest.raises(corpus.CorpusFormatError, match="directory of its own"):
        sweep([spec], tmp_path, executor=InlineExecutor(), progress=False, stack=1)


def assert_same_columns(got: Any, want: Any, rows: int | None = None) -> None:
    """Every column of run `want` (a RunResult or a corpus Run) is bitwise the same in `got`
    over their first `rows` evaluations (all of them by default), the agent's own timing
    `agent_overhead_ratio` aside (no rerun repeats a timing)."""
    n = len(want.steps) if rows is None else rows
    assert np.array_equal(got.steps[:n], want.steps[:n])
    for j, column in enumerate(want.columns):
        if column != "agent_overhead_ratio":
            new = got.values[:n, list(got.columns).index(column)]
            assert np.array_equal(new, want.values[:n, j], equal_nan=True), column


class Spy:
    """Calls `fn` and counts the calls: which unit of work a sweep handed its stacks to."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.fn(*args, **kwargs)


def test_the_slow_grokker_check_of_a_v2_corpus_is_a_v2_corpus_trained_stacked(
    tmp_path, monkeypatch
) -> None:
    import trainer.checks
    from trainer import corpus
    from trainer.checks import check_memorization
    from trainer.executors import InlineExecutor
    from trainer.spec import SweepSpec
    from trainer.summary import CHECK_DIR
    from trainer.sweep import sweep

    # wd = 0 and a high lr: these tiny runs memorize and stay memorized; their training sets
    # differ in size, so the stack pads all but the largest
    spec = SweepSpec.from_dict({
        "name": "tiny-mem", "family": "mlp", "role": "train", "n_runs": 4, "every": 25,
        "budget": 50, "space": {"p": 11, "frac": {"uniform": [0.4, 0.9]}, "lr": 3e-2,
                                 "wd": 0.0, "d_emb": 8, "d_hidden": 16},
    })  # fmt: skip
    sweep([spec], tmp_path, executor=InlineExecutor(), progress=False, stack=4,
          probes="per-run")  # fmt: skip
    source = {r.run_id: r for r in corpus.load(tmp_path)}
    memorized = [r for r in source.values() if r.outcome == "memorization"]
    assert len(memorized) >= 2, "the tiny spec should memorize"
    spy = Spy(trainer.checks.run_stack_probes_per_run)
    monkeypatch.setattr(trainer.checks, "run_stack_probes_per_run", spy)
    report = check_memorization(tmp_path, 2, factor=2, executor=InlineExecutor(), progress=False)
    assert report["checked"] == 2 and report["same_prefix"] == 2
    assert spy.calls == 2  # each run on its own, every agent measuring alone
    checked = corpus.load(tmp_path / CHECK_DIR, version=2)
    assert len(checked) == report["checked"]
    assert all(r.labels["budget"] == 100 for r in checked)
    # each continued run repeats its corpus run bit for bit, padded as the corpus's plan padded
    # it (not as the check's own runs would be stacked together)
    originals = [source[run.run_id.rsplit("-x", 1)[0]] for run in checked]
    # the check is only a test of the padding if the checked runs alone pad to fewer rows
    assert max(train_size(FAMILIES["mlp"].config_cls.from_dict(r.config)) for r in originals) < (
        max(r.meta["padded_rows"] for r in originals)
    )
    for run, original in zip(checked, originals, strict=True):
        assert run.meta["padded_rows"] == original.meta["padded_rows"]
        # the last row is the budget's end, not a scheduled evaluation
        assert_same_columns(run, original, rows=len(original.steps) - 1)


def _vmap_whole_loss(template: torch.nn.Module, loss_fn: Any) -> Any:
    """The reference: `vmap` over the whole per-run loss (forward, per-row loss, weighted sum),
    the formulation the stacked path used before the loss moved out of `vmap`."""
    from torch.func import functional_call, vmap

    def run_loss(p: Any, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (loss_fn(functional_call(template, p, (x,)), y) * w).sum()

    return vmap(run_loss)


@pytest.mark.parametrize("family", sorted(CASES))
def test_stacked_losses_are_bitwise_the_vmap_of_the_whole_loss(family: str) -> None:
    """The optimized loss (forward under `vmap`, loss outside) gives bitwise the losses,
    gradients and updated weights of the reference over several steps: padded rows, mini-batches,
    MSE and cross-entropy, every optimizer of the family's cases."""
    import copy

    from torch.func import stack_module_state

    from trainer.families import build, draw_batch, minibatch_generator
    from trainer.optim import StackedOptimizer
    from trainer.stacked import _pad, for_stacking, stacked_losses

    configs = [FAMILIES[family].config_cls.from_dict({"steps": STEPS, **c}) for c in CASES[family]]
    models, datas = [], []
    for config in configs:
        torch.manual_seed(config.seed)
        model, data, loss_fn = build(config)
        models.append(model)
        datas.append(data)
    template = copy.deepcopy(models[0])
    n = max(len(d.train_y) for d in datas)
    x_all = _pad([d.train_x for d in datas], n)
    y_all = _pad([d.train_y for d in datas], n)
    w_all = torch.zeros(len(datas), n)
    for i, d in enumerate(datas):
        w_all[i, : len(d.train_y)] = 1.0 / len(d.train_y)
    batch = getattr(configs[0], "batch_size", 0)
    gens = [minibatch_generator(c) for c in configs]
    sides = {}
    for name, make in (("reference", _vmap_whole_loss), ("optimized", stacked_losses)):
        params, _ = stack_module_state(models)
        embed = {k for k in params if k.startswith("embed.")}
        sides[name] = (
            make(for_stacking(template), loss_fn),  # the model as `train_stack` runs it
            params,
            StackedOptimizer(params, configs, embedding=embed),
        )
    for _ in range(5):
        x, y, w = x_all, y_all, w_all
        if batch:
            idx = torch.stack(
                [draw_batch(len(d.train_y), batch, g) for d, g in zip(datas, gens, strict=True)]
            )
            rows = torch.arange(len(datas))[:, None]
            x, y, w = x_all[rows, idx], y_all[rows, idx], torch.full(idx.shape, 1.0 / batch)
        losses = {}
        for name, (loss_of, params, opt) in sides.items():
            for p in params.values():
                p.grad = None
            losses[name] = loss_of(params, x, y, w)
            losses[name].sum().backward()
            opt.step()
        assert torch.equal(losses["reference"], losses["optimized"])
        ref, opt_ = sides["reference"][1], sides["optimized"][1]
        for key in ref:
            assert torch.equal(ref[key].grad, opt_[key].grad), key
            assert torch.equal(ref[key], opt_[key]), key


@pytest.mark.parametrize("family", sorted(CASES))
def test_train_size_is_the_training_set_build_makes(family: str) -> None:
    for config in CASES[family]:
        resolved = FAMILIES[family].config_cls.from_dict({"steps": STEPS, **config})
        torch.manual_seed(0)
        _, data, _ = build(resolved)
        assert train_size(resolved) == len(data.train_y), config


def test_a_run_rounds_by_the_rows_its_stack_pads_to_and_nothing_else() -> None:
    # p = 31: 961 pairs; the run (529 rows) is the smallest of the three, the largest (865)
    # sets the padding (sums over 100, 200, 300 or 476 rows did not change with padding here;
    # 50, 529 and 818 rows do).
    runs = [task("mlp", p=31, frac=frac, seed=seed, d_emb=16, d_hidden=32, steps=60)
            for frac, seed in ((0.55, 1), (0.7, 2), (0.9, 3))]  # fmt: skip
    rows = max(train_size(FAMILIES["mlp"].config_cls.from_dict(t.config)) for t in runs)
    first = runs[0].run_id

    def final(stack: list[RunTask], **kw: Any) -> dict[str, torch.Tensor]:
        weights: dict[str, dict[str, torch.Tensor]] = {}
        train_stack(stack, weights=weights, batched_probes=False, **kw)
        return weights[first]

    in_stack = final(runs)
    for alone in (final(runs[:1], rows=rows), final([runs[0], runs[2]]),
                  final(runs[::-1], rows=rows)):  # fmt: skip
        assert all(torch.equal(alone[n], in_stack[n]) for n in in_stack)


def test_stacks_are_the_plans_whatever_is_pending_and_pad_as_the_whole_stack() -> None:
    tasks = [task("mlp", p=23, frac=0.2 + 0.1 * s, seed=s, d_emb=16, d_hidden=32)
             for s in range(7)]  # fmt: skip
    plan = plan_stacks(tasks, 3)
    full = pending_stacks(tasks, tasks, 3)
    assert [s for s, _ in full] == plan
    assert [rows for _, rows in full] == [stack_rows(s) for s in plan]
    # a resumed sweep: the largest run of every stack is on disk already
    pending = [t for s in plan for t in s[:-1]]
    resumed = pending_stacks(tasks, pending, 3)
    assert [s for s, _ in resumed] == [s[:-1] for s in plan if len(s) > 1]
    assert [rows for _, rows in resumed] == [stack_rows(s) for s in plan if len(s) > 1]
    assert all(rows > stack_rows(s) for s, rows in resumed)


def test_a_resumed_sweep_writes_the_runs_an_uninterrupted_one_writes(tmp_path) -> None:
    import shutil

    from trainer.corpus import read_run, run_path
    from trainer.executors import InlineExecutor
    from trainer.spec import SweepSpec
    from trainer.sweep import sweep

    # three runs of 529, 673 and 865 training pairs: one stack padded to 865 rows
    spec = SweepSpec.from_dict({
        "name": "tiny-resume", "family": "mlp", "role": "train", "sampler": "grid", "every": 30,
        "budget": 60, "space": {"p": 31, "frac": [0.55, 0.7, 0.9], "lr": 1e-2, "d_emb": 16,
                                 "d_hidden": 32},
    })  # fmt: skip
    whole = tmp_path / "whole"
    sweep([spec], whole, executor=InlineExecutor(), progress=False, stack=4)
    # stopped before the smallest run was written: the resumed sweep trains it on its own
    resumed = tmp_path / "resumed"
    shutil.copytree(whole, resumed)
    smallest = min(spec.tasks(), key=lambda t: t.config["frac"])
    run_path(resumed, smallest.run_id).unlink()
    assert sweep([spec], resumed, executor=InlineExecutor(), progress=False, stack=4).done == 1
    old = read_run(run_path(whole, smallest.run_id))
    new = read_run(run_path(resumed, smallest.run_id))
    assert new.meta["labels"] == old.meta["labels"] and new.columns == old.columns
    assert new.meta["padded_rows"] == old.meta["padded_rows"] == 865  # the run file says so
    assert_same_columns(new, old)


def test_a_per_run_probes_sweep_writes_each_agent_alone_bit_for_bit(tmp_path, monkeypatch) -> None:
    """`--probes per-run` (how corpus v2 was trained): every column of the written runs is
    the one `run_stack_probes_per_run` gives for the plan's stack."""
    import trainer.sweep
    from trainer.corpus import read_run, run_path
    from trainer.executors import InlineExecutor
    from trainer.spec import SweepSpec
    from trainer.stacked import run_stack_probes_per_run
    from trainer.sweep import sweep

    spec = SweepSpec.from_dict({
        "name": "tiny-probes", "family": "mlp", "role": "train", "sampler": "grid", "every": 30,
        "budget": 60, "space": {"p": 31, "frac": [0.55, 0.9], "lr": 1e-2, "d_emb": 16,
                                 "d_hidden": 32},
    })  # fmt: skip
    # on runs this small the batched probes round as each agent alone does, so which unit of
    # work the sweep used is asked of the sweep itself
    spy = Spy(trainer.sweep.run_stack_probes_per_run)
    monkeypatch.setattr(trainer.sweep, "run_stack_probes_per_run", spy)
    sweep([spec], tmp_path / "batched", executor=InlineExecutor(), progress=False, stack=4)
    assert spy.calls == 0
    sweep([spec], tmp_path / "per-run", executor=InlineExecutor(), progress=False, stack=4,
          probes="per-run")  # fmt: skip
    assert spy.calls == 1  # the plan's one stack
    tasks = spec.tasks()
    expected = {r.task.run_id: r for r in run_stack_probes_per_run(tasks, rows=stack_rows(tasks))}
    for run_id, want in expected.items():
        got = read_run(run_path(tmp_path / "per-run", run_id))
        assert got.columns == want.columns
        assert_same_columns(got, want)
    with pytest.raises(ValueError, match="probes"):
        sweep([spec], tmp_path / "x", executor=InlineExecutor(), progress=False, probes="fast")


def test_execute_pads_each_run_as_asked_and_refuses_what_it_cannot(tmp_path) -> None:
    from trainer.execution import execute
    from trainer.executors import InlineExecutor

    tasks = [task("mlp", p=23, frac=0.2 + 0.1 * s, seed=s, d_emb=16, d_hidden=32, steps=10)
             for s in range(2)]  # fmt: skip
    with pytest.raises(ValueError, match="lacks the runs"):
        execute(tasks, tmp_path, executor=InlineExecutor(), progress=False, stack=4,
                rows={tasks[0].run_id: 300})  # fmt: skip
    with pytest.raises(ValueError, match="stack > 1"):
        execute(tasks, tmp_path, executor=InlineExecutor(), progress=False, stack=1,
                rows={t.run_id: 300 for t in tasks})  # fmt: skip


@pytest.mark.parametrize("n_layers", [1, 2])
@pytest.mark.parametrize("layernorm", [False, True])
def test_the_transformers_stacked_form_is_its_function(n_layers: int, layernorm: bool) -> None:
    """`Transformer.stacked_forward` (what a stack trains) is `forward` (what a run alone
    trains): for a stack of two runs under `vmap`, on every row of the task, at init scales
    that make the attention sharp, the logits and every gradient agree to 1e-10 in float64; in
    float32 the logits agree within 1e-5 of their largest magnitude. `for_stacking` swaps the
    form in for the model and each of its blocks, on a copy only."""
    from torch.func import functional_call, stack_module_state, vmap

    from trainer.families import Transformer, TransformerConfig
    from trainer.stacked import for_stacking

    x = torch.cartesian_prod(torch.arange(23), torch.arange(23))
    y = (x[:, 0] + x[:, 1]) % 23
    for init_scale, dtype in itertools.product((1.0, 3.0), (torch.float64, torch.float32)):
        models = []
        for seed in (0, 1):
            torch.manual_seed(seed)
            models.append(Transformer(TransformerConfig(
                p=23, d_model=16, n_heads=4, d_mlp=32, n_layers=n_layers, layernorm=layernorm,
                init_scale=init_scale)).to(dtype))  # fmt: skip
        template = models[0]
        stacked = for_stacking(template)
        assert stacked is not template
        assert not any("forward" in vars(m) for m in template.modules())
        swapped = [m for m in stacked.modules() if "forward" in vars(m)]
        assert len(swapped) == n_layers  # the model and each early block
        params, _ = stack_module_state(models)
        sides = {}
        for name, model in (("own", template), ("stacked", stacked)):
            p = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
            logits = vmap(lambda q, m=model: functional_call(m, q, (x,)))(p)  # (2, N, 23)
            F.cross_entropy(logits.flatten(0, 1), y.repeat(2)).backward()
            sides[name] = (logits.detach(), {k: v.grad for k, v in p.items()})
        (own, own_grads), (got, got_grads) = sides["own"], sides["stacked"]
        assert not torch.equal(got, own)  # the stack really runs the other form
        tolerance = 1e-10 if dtype == torch.float64 else 1e-5
        for r in range(2):
            assert (got[r] - own[r]).abs().max() <= tolerance * own[r].abs().max()
            if dtype == torch.float64:
                for k, g in own_grads.items():
                    assert (got_grads[k][r] - g[r]).abs().max() <= tolerance * g[r].abs().max(), k
