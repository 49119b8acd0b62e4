"""Training many runs of one shape at once, each watched by its own grokwatch agent.

A corpus sweep trains thousands of tiny models; one step of one of them is a few small
matmuls and a few dozen kernel launches, so a loop over runs pays the launches and the
autograd bookkeeping once per run. Here R runs whose parameters have the same shapes are
stacked along a leading dimension (`torch.func.stack_module_state`) and one step of all of
them is one `vmap`-ed forward, one backward and one optimizer update
(`trainer.optim.StackedOptimizer`): R models' arithmetic in the launches of one.

What may differ inside a stack: everything that is a number and not a shape — lr, weight
decay, momentum, init scale, Grokfast on/off, the embedding lr multiplier, seeds, the task's
operation and split, even the training-set size (rows are padded and weighted 0, so each
run's loss is still the mean over its own training set). What must not: the model's shapes,
the loss, the optimizer kind (Adam or SGD), betas, batch size, the probe cadence
(:func:`stack_key`).

Each run keeps a model of its own, built exactly as the one-run-at-a-time path builds it
(same seed, same draws), which its `grokwatch.Agent` watches: before each evaluation the run's
slice of the stacked weights and gradients is copied into it, so the agent's probes see what
they would see in a plain loop. The agent gets every step's loss (its loss-window probes need
them) and decides as usual; a run leaves the stack when its budget is spent or its label is
settled (`trainer.runner.settled`), and the stack shrinks to the runs still going.

Equal to training each run alone within float rounding (the padded mean and the batched
update round differently, and a model with a `stacked_forward`, the transformer, runs that form
of its forward in a stack: :func:`for_stacking`): `tests/trainer/test_trainer_stacked.py`
compares final weights.
Besides the run itself, one thing sets a full-batch run's rounding: the number of rows its
stack pads the training sets to. The output bias's gradient is a sum over all rows, padded ones
included; each adds 0, but how the sum is grouped follows its length, so the same run rounds
differently in a stack with a larger training set. The other runs, how many they are and the
run's place in the stack change no bit (measured on the MLPs, and tested). A sweep therefore
pads each stack as its plan says (`rows`), whichever of the stack's runs are left to train.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from grokwatch import Agent, Limits, ModelIO
from trainer.families import FAMILIES, build, draw_batch, minibatch_generator
from trainer.optim import StackedOptimizer
from trainer.runner import RunResult, failed, finished, settled
from trainer.spec import RunTask
from trainer.stacked_probes import StackProbes
from trainer.train import seeded

# Config fields that are numbers a stack may mix: everything else must be equal.
PER_RUN = frozenset({
    "lr", "wd", "seed", "data_seed", "init_scale", "steps", "frac", "n_train", "n_test", "op",
    "momentum", "grokfast_alpha", "grokfast_lamb", "k",
})  # fmt: skip


def stack_key(task: RunTask) -> tuple[Any, ...]:
    """Runs with the same key can be trained in one stack."""
    shape = tuple(sorted((k, repr(v)) for k, v in task.config.items() if k not in PER_RUN))
    kind = "sgd" if task.config.get("optimizer") == "sgd" else "adam"
    shape = tuple((k, v) for k, v in shape if k != "optimizer")
    return (task.family, kind, task.every, task.max_samples, shape)


@dataclasses.dataclass(eq=False)
class _Member:
    task: RunTask
    config: Any
    model: nn.Module  # the run's own copy, watched by its agent
    agent: Agent
    n_train: int
    gen: torch.Generator | None
    seconds: float = 0.0  # this run's share of the stack's time


def _member(task: RunTask, device: torch.device) -> tuple[_Member, Any]:
    family = FAMILIES[task.family]
    config = family.config_cls.from_dict(dict(task.config))
    family.check(config)
    with seeded(config.seed):  # the same draws as the one-at-a-time path
        model, data, loss_fn = build(config)
    model, data = model.to(device), data.to(device)
    agent = Agent(
        model,
        train=(data.train_x, data.train_y),
        test=(data.test_x, data.test_y),
        every=task.every,
        run_id=task.run_id,
        config=task.config,
        budget=task.budget,
        transport=None,  # nothing on disk: the history is read back at the end
        modulus=family.modulus(config),
        io=ModelIO(loss_fn=loss_fn),
        limits=Limits(max_samples=task.max_samples),
    )
    member = _Member(task, config, model, agent, len(data.train_y), minibatch_generator(config))
    return member, (data, loss_fn)


def _pad(rows: Sequence[torch.Tensor], n: int) -> torch.Tensor:
    """Stack `(n_i, ...)` tensors into `(R, n, ...)`, padding with copies of row 0 (any valid
    input: padded rows get weight 0)."""
    out = []
    for r in rows:
        fill = r[:1].expand(n - len(r), *r.shape[1:])
        out.append(torch.cat([r, fill]))
    return torch.stack(out)


def train_stack(
    tasks: Sequence[RunTask],
    *,
    device: str | torch.device = "cpu",
    weights: dict[str, dict[str, torch.Tensor]] | None = None,
    batched_probes: bool = True,
    rows: int | None = None,
) -> list[RunResult]:
    """Train `tasks` (one :func:`stack_key`) together; one result per task, in order of
    finishing. Never raises: a stack that fails records every unfinished run as failed.
    `weights`, if given, receives each run's final parameters by run id (for tests).
    `batched_probes`: the agents' costliest probes are computed for the whole stack at once
    (`trainer.stacked_probes`); False: every agent runs all its probes on its own model.
    `rows`: pad the full-batch training sets to this many rows (None, or fewer than the largest
    training set: to the largest), so the runs round as in the stack of the sweep's plan
    (`trainer.execution.plan_stacks`) whichever of its runs are trained now."""
    started = time.perf_counter()
    device = torch.device(device)
    results: list[RunResult] = []
    members: list[_Member] = []
    try:
        keys = {stack_key(t) for t in tasks}
        if len(keys) != 1:
            raise ValueError(f"a stack needs one stack_key, got {len(keys)} different ones")
        built = [_member(t, device) for t in tasks]
        members = [m for m, _ in built]
        datas = [d for _, (d, _) in built]
        loss_fn = built[0][1][1]
        every = tasks[0].every
        template = copy.deepcopy(members[0].model)  # no hooks: the agents hook their own
        agents = [m.agent for m in members]
        probes = None
        if batched_probes and StackProbes.supported(agents):
            probes = StackProbes(copy.deepcopy(template), agents)
            probes.attach(agents)
        params, _ = stack_module_state([m.model for m in members])  # name → (R, ...)
        names = list(params)
        embed = {n for n in names if n.startswith("embed.")}
        opt = StackedOptimizer(params, [m.config for m in members], embedding=embed)

        n_max = max(rows or 0, *(m.n_train for m in members))
        x_all = _pad([d.train_x for d in datas], n_max)  # (R, N, ...)
        y_all = _pad([d.train_y for d in datas], n_max)  # (R, N)
        weight = torch.zeros(len(members), n_max, device=device)  # (R, N)
        for i, m in enumerate(members):
            weight[i, : m.n_train] = 1.0 / m.n_train  # each run's loss: its own mean
        batch = getattr(members[0].config, "batch_size", 0)

        losses_of = stacked_losses(for_stacking(template), loss_fn)
        step = 0
        while members:
            step += 1
            t0 = time.perf_counter()
            for p in params.values():
                p.grad = None
            if batch:
                idx = torch.stack([draw_batch(m.n_train, batch, m.gen) for m in members])  # type: ignore[arg-type]
                idx = idx.to(device)  # (R, B)
                rows = torch.arange(len(members), device=device)[:, None]  # (R, 1)
                x, y = x_all[rows, idx], y_all[rows, idx]  # (R, B, ...), (R, B)
                w = torch.full(idx.shape, 1.0 / batch, device=device)  # (R, B)
            else:
                x, y, w = x_all, y_all, weight
            losses = losses_of(params, x, y, w)  # (R,)
            losses.sum().backward()  # runs are independent: each gets its own gradient
            opt.step()
            per_run = losses.detach().unbind()  # R views in one call: no sync, no copy
            share = (time.perf_counter() - t0) / len(members)

            evaluating = step == 1 or step % every == 0  # when the agents measure
            if probes is not None:
                probes.at(step, params)  # the batched probes read the stack's weights
            done: list[int] = []
            for i, m in enumerate(members):
                t1 = time.perf_counter()
                if evaluating:
                    _load_slice(m.model, params, i)
                m.agent.step(step, loss=per_run[i])
                if step >= m.task.budget or settled(
                    m.agent, step, tail=m.task.tail, tail_min=m.task.tail_min
                ):
                    done.append(i)
                m.seconds += share + time.perf_counter() - t1
            if not done:
                continue
            for i in done:
                m = members[i]
                t1 = time.perf_counter()
                m.agent.close()
                m.seconds += time.perf_counter() - t1
                if weights is not None:
                    weights[m.task.run_id] = {n: v[i].detach().clone() for n, v in params.items()}
                results.append(finished(m.task, m.agent, step, m.seconds, n_max))
            keep = [i for i in range(len(members)) if i not in set(done)]
            members = [members[i] for i in keep]
            if not members:
                break
            index = torch.tensor(keep, device=device)
            params = {n: v.detach()[index].requires_grad_() for n, v in params.items()}
            opt.keep(index)
            if probes is not None:
                probes.keep(index)
            opt.reset_params(params)
            x_all, y_all, weight = x_all[index], y_all[index], weight[index]
    except Exception as exc:
        done_ids = {r.task.run_id for r in results}
        elapsed = time.perf_counter() - started
        results += [failed(t, exc, elapsed) for t in tasks if t.run_id not in done_ids]
        for m in members:
            m.agent.close()
    return results


def stacked_losses(
    template: nn.Module, loss_fn: Callable[..., torch.Tensor]
) -> Callable[..., torch.Tensor]:
    """`(params (R, ...), x (R, N, ...), y (R, N), w (R, N)) -> (R,)`: each run's weighted loss.

    Only the model's forward is `vmap`-ed; the per-row loss runs once on the `(R·N, C)` logits
    outside it. Under `vmap` the cross-entropy has no batching rule and runs as a Python
    decomposition with checks on every call; outside it is the one native kernel. The two are
    the same float operations (log-softmax over each row, a gather, a weighted sum over N per
    run), so the losses and gradients are bitwise those of `vmap` over the whole loss
    (`tests/trainer/test_trainer_stacked.py` checks every family).
    """
    forward = vmap(lambda p, x: functional_call(template, p, (x,)))

    def losses(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
               w: torch.Tensor) -> torch.Tensor:  # fmt: skip
        logits = forward(p, x)  # (R, N, C)
        rows = loss_fn(logits.flatten(0, 1), y.flatten()).view(y.shape)  # (R, N)
        return (rows * w).sum(1)  # (R,)

    return losses


def for_stacking(template: nn.Module) -> nn.Module:
    """`template`, or a copy of it whose modules with a `stacked_forward` run it as their
    forward: the form of the model written for `vmap` over a stack (same function, other
    rounding)."""
    if not any(hasattr(m, "stacked_forward") for m in template.modules()):
        return template
    template = copy.deepcopy(template)
    for m in template.modules():
        if hasattr(m, "stacked_forward"):
            m.forward = m.stacked_forward  # type: ignore[method-assign]
    return template


@torch.no_grad()
def _load_slice(model: nn.Module, params: dict[str, torch.Tensor], i: int) -> None:
    """Copy run i's weights and gradients out of the stack into its own model."""
    for name, p in model.named_parameters():
        stacked = params[name]
        p.copy_(stacked[i])
        if stacked.grad is None:
            p.grad = None
        elif p.grad is None:
            p.grad = stacked.grad[i].clone()
        else:
            p.grad.copy_(stacked.grad[i])


def run_stack(
    tasks: Sequence[RunTask], *, batched_probes: bool = True, rows: int | None = None
) -> list[RunResult]:
    """The unit of work of a stacked sweep (picklable, top level): one torch thread per
    worker process, as `trainer.runner.run_one`; `rows` as in :func:`train_stack`."""
    threads = torch.get_num_threads()
    if tasks and tasks[0].threads is not None:
        torch.set_num_threads(tasks[0].threads)
    try:
        return train_stack(tasks, batched_probes=batched_probes, rows=rows)
    finally:
        torch.set_num_threads(threads)


def run_stack_probes_per_run(
    tasks: Sequence[RunTask], *, rows: int | None = None
) -> list[RunResult]:
    """:func:`run_stack` with every agent running all its probes on its own model (corpus v2
    as committed; the throughput benchmark's comparison)."""
    return run_stack(tasks, batched_probes=False, rows=rows)
