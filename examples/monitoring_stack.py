"""A training run watched by the monitoring stack: grokwatch serve, Prometheus, the shipped rules.

Starts ``grokwatch serve`` and a real Prometheus on free local ports (Prometheus scrapes the
service every second and evaluates ``deploy/prometheus/grokwatch-rules.yml``), trains the run of
``plain_loop.py`` with ``Agent(transport=URL)`` — pausing 1.5 s after each evaluation so that
Prometheus scrapes between two of them, as it would between evaluations minutes apart — then
asks Prometheus for the run's forecast series and the alerts the rules raised, prints them next
to what the agent's own forecasts said (the two must agree), and stops both.
Needs the ``service`` extra and Prometheus (``apt-get install prometheus``); deploy/ has the
full stack with Alertmanager and Grafana (docs: Monitoring).

    python examples/monitoring_stack.py [--steps 2000]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import torch
import torch.nn.functional as F

import grokwatch
from trainer.model import MLP
from trainer.tasks import make_dataset

RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "grokwatch-rules.yml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not happen within {timeout:.0f} s")


def start(tmp: Path) -> tuple[list[subprocess.Popen[bytes]], str, str]:
    """grokwatch serve and Prometheus scraping it; returns the processes and both URLs."""
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        raise SystemExit("prometheus is not installed (apt-get install prometheus)")
    port, prom_port = free_port(), free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{RULES}]\n"
        "scrape_configs:\n"
        f"  - {{job_name: grokwatch, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}\n"
    )
    service = [sys.executable, "-m", "grokwatch.cli", "serve", "--port", str(port),
               "--db", str(tmp / "service.db")]  # fmt: skip
    prom = [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}"]  # fmt: skip
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen(service, **quiet), subprocess.Popen(prom, **quiet)]  # type: ignore[call-overload]
    url, prom_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{prom_port}"
    wait_for("grokwatch serve ready", lambda: httpx.get(f"{url}/readyz").status_code == 200)
    wait_for("Prometheus ready", lambda: httpx.get(f"{prom_url}/-/ready").status_code == 200)
    return procs, url, prom_url


def train(url: str, steps: int) -> tuple[str, bool]:
    """Train the run; returns its id and whether any of the agent's own forecasts alerted."""
    torch.manual_seed(0)
    data = make_dataset(31, "add", 0.5, data_seed=0)
    model = MLP(31, d_emb=32, d_hidden=64)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1.0, betas=(0.9, 0.98))
    agent = grokwatch.Agent(
        model,
        train=(data.train_x, data.train_y),
        test=(data.test_x, data.test_y),
        every=100,
        budget=steps,
        transport=url,
        labels={"experiment": "examples", "team": "docs"},
    )
    alerted = False
    with agent:
        for step in range(1, steps + 1):
            loss = F.cross_entropy(model(data.train_x), data.train_y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            decision = agent.step(step, loss=loss.detach())
            if decision.step == step:  # an evaluation: let Prometheus scrape before the next
                alerted |= decision.forecast is not None and decision.forecast.alert
                time.sleep(1.5)
    return agent.run_id, alerted


def query(prom_url: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prom_url}/api/v1/query", params={"query": expr}, timeout=10).json()
    return list(answer["data"]["result"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        procs, url, prom_url = start(Path(tmp))
        try:
            print(f"grokwatch serve on {url}, Prometheus on {prom_url}")
            run_id, agent_alerted = train(url, args.steps)
            sel = f'{{run_id="{run_id}"}}'
            wait_for(
                "a scrape after the run",
                lambda: query(prom_url, f"grokwatch_run_step{sel} >= {args.steps}"),
            )
            time.sleep(2.5)  # two more rule evaluations
            peak = query(prom_url, f"max_over_time(grokwatch_run_grok_probability_ratio{sel}[10m])")
            alerted = query(prom_url, f"max_over_time(grokwatch_run_grok_alert{sel}[10m])")
            raised = "yes" if float(alerted[0]["value"][1]) == 1 else "no"
            own = "yes" if agent_alerted else "no"
            print(f"Prometheus: highest P(grok within budget) of {run_id}: "
                  f"{float(peak[0]['value'][1]):.2f}; grok alert raised: {raised}; "
                  f"the agent's own forecasts alerted: {own}")  # fmt: skip
            names = sorted({(a["metric"]["alertname"], a["metric"]["alertstate"])
                            for a in query(prom_url, f"ALERTS{sel}")})  # fmt: skip
            for name, state in names:
                print(f"alert {name}: {state}")
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()
