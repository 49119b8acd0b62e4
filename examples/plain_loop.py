"""grokwatch in a plain PyTorch training loop.

Trains (a + b) mod 31 on half of the pairs with full-batch AdamW and weight decay, a run that
memorizes at once and groks after a plateau, with the agent attached. Every few evaluations it
prints the agent's decision: the phase, P(grok within the budget), the estimated t_grok with its
80 % interval, and the action (always ``continue`` here: stop/extend advice needs run control).

    python examples/plain_loop.py [--steps 2000] [--every 100] [--db runs.db]

With ``--db`` the run is kept, to read back with ``grokwatch show RUN --db runs.db``.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import grokwatch
from trainer.model import MLP
from trainer.tasks import make_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="training steps (the budget)")
    parser.add_argument("--every", type=int, default=100, help="steps between evaluations")
    parser.add_argument("--db", default=None, help="keep the run in this SQLite run table")
    args = parser.parse_args()

    torch.manual_seed(0)
    data = make_dataset(31, "add", 0.5, data_seed=0)  # (a + b) mod 31, half of the pairs
    model = MLP(31, d_emb=32, d_hidden=64)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1.0, betas=(0.9, 0.98))

    agent = grokwatch.Agent(
        model,
        train=(data.train_x, data.train_y),
        test=(data.test_x, data.test_y),
        every=args.every,
        budget=args.steps,
        transport=args.db,  # a database path, or None: nothing kept
        run_id="plain-loop",
    )
    with agent:
        for step in range(1, args.steps + 1):
            loss = F.cross_entropy(model(data.train_x), data.train_y)  # (N_train, 31) logits
            opt.zero_grad()
            loss.backward()
            opt.step()
            decision = agent.step(step, loss=loss.detach())  # no sync: the agent keeps the tensor
            if decision.step == step and step % (3 * args.every) == 0:
                print(f"{decision.action}: {decision.message}")
            if decision.should_stop:
                break
    s = agent.summary()
    print(f"outcome {s['outcome']}: t_mem={s['t_mem']} t_grok={s['t_grok']} gap={s['gap']}")


if __name__ == "__main__":
    main()
