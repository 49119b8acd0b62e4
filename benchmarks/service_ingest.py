"""Ingest benchmark of the detector service on loopback (server and load in two processes).

Two scenarios against a real ``grokwatch serve`` (uvloop + httptools, access log off, SQLite
WAL database in a temp dir):

- **throughput** (closed loop): ``--agents`` simulated agents, each on its own kept-alive
  connection and run, post batches of ``--batch`` points back to back for ``--duration``
  seconds. Reports points/s, requests/s and latency percentiles.
- **live** (open loop): ``--runs`` live runs each post one batch of ``--report-points`` points
  once a second (random phase), on their own connections. Latency is measured from each
  request's *scheduled* send time, so queueing shows up (no coordinated omission). Every run
  starts at step 0 in the same second -- young runs cost the forecaster most (a change-point
  observation per 10 % growth of the step) -- so the first seconds are a cold start of all
  runs at once: ``p99_ms`` covers every request, ``p99_ms_after_warmup`` those scheduled after
  ``--warmup`` seconds, ``p99_ms_by_second`` each second apart.

Every point carries twelve values (the four performance measures and eight probes).

``--replicas N`` starts N ``grokwatch serve`` processes and sends each run to the replica the
agent would pick (``grokwatch.http_transport.pick_replica``, a hash of the run id): the
deployment *Several replicas* describes, here on one host. Server CPU is summed over them.

    python benchmarks/service_ingest.py [--scenario both] [--duration 10] [--agents 32]
        [--batch 100 ...] [--runs 1000 ...] [--report-points 10] [--replicas 1]
        [--forecaster default|none] [--warmup SECONDS] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import random
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
from service_common import MEASURES, Connection, Server, register, summary_ms, use_uvloop

from grokwatch.http_transport import pick_replica


class Cluster:
    """``n`` servers, each run owned by the replica the agent's hash picks."""

    def __init__(self, servers: list[Server]) -> None:
        self.servers = servers
        self._by_url = {s.url: s for s in servers}

    def owner(self, run: str) -> Server:
        return self._by_url[pick_replica(run, list(self._by_url))]

    def register(self, runs: list[str]) -> None:
        for server in self.servers:
            register(server.url, [r for r in runs if self.owner(r) is server])

    def cpu_seconds(self) -> float:
        return sum(s.cpu_seconds() for s in self.servers)

    def forecast_stats(self) -> dict[str, Any]:
        """From every replica's ``/metrics``, summed: runs whose forecast still waits and the
        p50 and p99 of the forecasts' lag (the upper bound of the histogram bucket each falls
        in; None when none lagged)."""
        total: dict[str, float] = {}
        lag: dict[float, float] = {}
        for server in self.servers:
            text = httpx.get(f"{server.url}/metrics", timeout=30).text
            for line in text.splitlines():
                name, _, value = line.rpartition(" ")
                if name.startswith("grokwatch_service_forecast_lag_seconds_bucket{"):
                    bound = name.split('le="', 1)[1].split('"', 1)[0]
                    le = math.inf if bound == "+Inf" else float(bound)
                    lag[le] = lag.get(le, 0.0) + float(value)
                elif name == "grokwatch_service_forecast_backlog_runs":
                    total[name] = total.get(name, 0.0) + float(value)
        out: dict[str, Any] = {
            "forecast_backlog_runs_at_end": int(
                total.get("grokwatch_service_forecast_backlog_runs", 0)
            ),
        }
        lagged = lag.get(math.inf, 0.0)
        out["forecasts_lagged"] = int(lagged)
        for q in (50, 99):
            hit = [le for le, n in sorted(lag.items()) if lagged and n >= lagged * q / 100]
            # past the last bucket: no bound (JSON has no infinity)
            out[f"forecast_lag_p{q}_ms_at_most"] = (
                hit[0] * 1e3 if hit and math.isfinite(hit[0]) else None
            )
        return out


def _body(start: int, n: int, values_json: str) -> bytes:
    pts = ",".join(f'{{"step":{s},"values":{values_json}}}' for s in range(start, start + n))
    return f'{{"points":[{pts}]}}'.encode()


def _values(rng: random.Random) -> str:
    """A run on its post-memorization plateau (the common state of a live grokking run)."""
    values = {m: round(rng.random(), 6) for m in MEASURES}
    values.update(train_accuracy=1.0, test_accuracy=round(0.05 + 0.05 * rng.random(), 6))
    return json.dumps(values, separators=(",", ":"))


async def throughput(server: Cluster, agents: int, batch: int, duration: float) -> dict[str, Any]:
    runs = [f"tp-{i}" for i in range(agents)]
    server.register(runs)
    latencies: list[float] = []
    points = 0
    errors = 0
    cpu0, client0 = server.cpu_seconds(), time.process_time()
    began = time.perf_counter()
    end = began + duration

    async def agent(run: str, seed: int) -> None:
        nonlocal points, errors
        values = _values(random.Random(seed))
        conn = Connection("127.0.0.1", server.owner(run).port)
        await conn.open()
        step = 0
        path = f"/v1/runs/{run}/points"
        while time.perf_counter() < end:
            body = _body(step, batch, values)
            t0 = time.perf_counter()
            status, _ = await conn.request("POST", path, body)
            latencies.append(time.perf_counter() - t0)
            if status == 200:
                points += batch
            else:
                errors += 1
            step += batch
        conn.close()

    await asyncio.gather(*(agent(run, i) for i, run in enumerate(runs)))
    elapsed = time.perf_counter() - began
    return {
        "scenario": "throughput",
        "agents": agents,
        "batch": batch,
        "duration_s": round(elapsed, 2),
        "requests_per_s": round(len(latencies) / elapsed),
        "points_per_s": round(points / elapsed),
        "values_per_s": round(points * len(MEASURES) / elapsed),
        "errors": errors,
        "server_cpu_cores": round((server.cpu_seconds() - cpu0) / elapsed, 2),
        "client_cpu_cores": round((time.process_time() - client0) / elapsed, 2),
        **server.forecast_stats(),
        **summary_ms(latencies),
    }


async def live(
    server: Cluster, runs: int, report_points: int, duration: float, warmup: float
) -> dict[str, Any]:
    ids = [f"live-{i}" for i in range(runs)]
    server.register(ids)
    conns = [Connection("127.0.0.1", server.owner(i).port) for i in ids]
    for c in conns:
        await c.open()
    latencies: list[float] = []
    seconds: list[float] = []  # when each request was scheduled, from the start
    errors = 0
    rng = random.Random(0)
    cpu0, client0 = server.cpu_seconds(), time.process_time()
    start = time.perf_counter() + 0.5
    end = start + duration

    async def run(i: int) -> None:
        nonlocal errors
        values = _values(random.Random(i))
        scheduled = start + rng.random()
        step = 0
        path = f"/v1/runs/{ids[i]}/points"
        while scheduled < end:
            await asyncio.sleep(max(scheduled - time.perf_counter(), 0))
            status, _ = await conns[i].request("POST", path, _body(step, report_points, values))
            latencies.append(time.perf_counter() - scheduled)
            seconds.append(scheduled - start)
            errors += status != 200
            step += report_points
            scheduled += 1.0

    await asyncio.gather(*(run(i) for i in range(runs)))
    elapsed = time.perf_counter() - start
    for c in conns:
        c.close()
    return {
        "scenario": "live",
        "runs": runs,
        "report_points": report_points,
        "duration_s": round(elapsed, 2),
        "requests_per_s": round(len(latencies) / elapsed),
        "points_per_s": round(len(latencies) * report_points / elapsed),
        "errors": errors,
        "server_cpu_cores": round((server.cpu_seconds() - cpu0) / elapsed, 2),
        "client_cpu_cores": round((time.process_time() - client0) / elapsed, 2),
        **server.forecast_stats(),
        **summary_ms(latencies),
        "warmup_s": warmup,
        "p99_ms_after_warmup": summary_ms(
            [x for x, t in zip(latencies, seconds, strict=True) if t >= warmup]
        )["p99_ms"],
        "p99_ms_by_second": [
            summary_ms([x for x, t in zip(latencies, seconds, strict=True) if s <= t < s + 1])[
                "p99_ms"
            ]
            for s in range(math.ceil(duration))
        ],
    }


@contextlib.contextmanager
def cluster(tmp: Path, name: str, replicas: int, forecaster: str) -> Iterator[Cluster]:
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(Server(tmp / f"{name}-{i}.db", forecaster=forecaster))
            for i in range(replicas)
        ]
        yield Cluster(servers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", choices=["throughput", "live", "both"], default="both")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--agents", type=int, default=32)
    parser.add_argument("--batch", type=int, nargs="+", default=[100])
    parser.add_argument("--runs", type=int, nargs="+", default=[1000])
    parser.add_argument("--report-points", type=int, default=10)
    parser.add_argument(
        "--warmup",
        type=float,
        default=5.0,
        help="live: seconds left out of p99_ms_after_warmup (every run starts at step 0 at once)",
    )
    parser.add_argument("--forecaster", default="default", help="'default' or 'none'")
    parser.add_argument("--replicas", type=int, default=1, help="service processes (sharded)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.replicas < 1:
        parser.error("--replicas must be >= 1")
    use_uvloop()
    jobs: list[tuple[str, Callable[[Cluster], Coroutine[Any, Any, dict[str, Any]]]]] = []
    if args.scenario in ("throughput", "both"):
        for b in args.batch:
            job = functools.partial(throughput, agents=args.agents, batch=b, duration=args.duration)
            jobs.append((f"tp{b}", job))
    if args.scenario in ("live", "both"):
        for n in args.runs:
            job = functools.partial(
                live,
                runs=n,
                report_points=args.report_points,
                duration=args.duration,
                warmup=args.warmup,
            )
            jobs.append((f"live{n}", job))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, job in jobs:
            with cluster(Path(tmp), name, args.replicas, args.forecaster) as server:
                res = asyncio.run(job(server))
            res.update(forecaster=args.forecaster, replicas=args.replicas)
            print(json.dumps(res))
            results.append(res)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
