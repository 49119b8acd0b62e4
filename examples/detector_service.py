"""Report a training run to a detector service over HTTP, then read the service's view of it.

Starts ``grokwatch serve`` on a free local port (its database in a temporary directory), trains
the run of ``plain_loop.py`` with ``Agent(transport=URL)`` — records go over HTTP on a background
thread; the service judges the run with the same detector and forecaster and sends its decision
back — then reads the run from ``GET /v1/runs/{id}`` and a few of its series from ``/metrics``,
and stops the service. Needs the ``service`` extra (``pip install -e ".[service]"``).

    python examples/detector_service.py [--steps 1500] [--budget 2000]

The run stops at step 1500 of its 2000-step budget, on its plateau, so the service's forecast is
read before the jump (the run groks at step 1600).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch
import torch.nn.functional as F

import grokwatch
from trainer.model import MLP
from trainer.tasks import make_dataset


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(db: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = [sys.executable, "-m", "grokwatch.cli", "serve", "--port", str(port), "--db", str(db)]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.2)
    server.terminate()
    raise RuntimeError(f"grokwatch serve did not become ready on {url} within 120 s")


def train(url: str, steps: int, budget: int) -> str:
    torch.manual_seed(0)
    data = make_dataset(31, "add", 0.5, data_seed=0)
    model = MLP(31, d_emb=32, d_hidden=64)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1.0, betas=(0.9, 0.98))
    agent = grokwatch.Agent(
        model,
        train=(data.train_x, data.train_y),
        test=(data.test_x, data.test_y),
        every=100,
        budget=budget,
        transport=url,  # records go to the service, not to a local database
        labels={"experiment": "examples"},
    )
    with agent:
        for step in range(1, steps + 1):
            loss = F.cross_entropy(model(data.train_x), data.train_y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            agent.step(step, loss=loss.detach())  # never waits for the network
    return agent.run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500, help="steps trained")
    parser.add_argument("--budget", type=int, default=2000, help="the run's step budget")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_service(Path(tmp) / "service.db")
        try:
            print(f"grokwatch serve on {url}")
            run_id = train(url, args.steps, args.budget)
            state = httpx.get(f"{url}/v1/runs/{run_id}", timeout=10).json()
            forecast = state.get("forecast") or {}
            print(
                f"the service holds {state['n_points']} evaluations of {run_id}: phase "
                f"{state['phase']}, t_grok={state['events']['t_grok']}, "
                f"P(grok within budget)={forecast.get('p_grok_budget', float('nan')):.2f}"
            )
            exposition = httpx.get(f"{url}/metrics", timeout=10).text
            for line in exposition.splitlines():
                if line.startswith(("grokwatch_run_step{", "grokwatch_run_grok_probability")):
                    print(line)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
