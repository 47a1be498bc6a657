"""Heartbeat benchmark: the portal's CPU seconds per minute while N node agents report.

1. Set up: its own database with N registered simulated 8-GPU nodes, one web process started as
   the run command starts it, on the embedded PostgreSQL and Redis of $PORTAL_DATA_DIR.
2. Warm-up: every agent sends one heartbeat and one telemetry report (not measured).
3. Per-request cost: one connection, one kind of request back to back; CPU per request of the web
   process and of the PostgreSQL backends serving it, next to two baselines through the same server.
4. Load: N agents, each a heartbeat then a telemetry report every interval, phase-shifted evenly,
   from light load-generator processes over keep-alive connections.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from .cpu import PortalCpu, redis_pid_find
from .portal import DATABASE, REPO, SIMULATION, SimulatedAgent, nodes_create, services_start, web_start, web_stop
from .report import PER_REQUEST_KINDS, Measured, load_print, merged, per_request_print


def _load_average() -> str:
    return "/".join(f"{value:.2f}" for value in os.getloadavg())


def _job(agents: list[SimulatedAgent], total: int, **fields) -> dict:
    return {
        "host": "127.0.0.1",
        "total_agents": total,
        # Above every seq sent before (microseconds, while the agent uses milliseconds: one run
        # of the benchmark never sends a thousand messages per agent per millisecond).
        "seq_base": time.time_ns() // 1000,
        "agents": [[a.index, a.auth, a.telemetry, a.inventory] for a in agents],
        **fields,
    }


def _measure(jobs: list[dict], cpu: PortalCpu) -> Measured:
    """One load process per job; the portal's CPU is sampled from `go` until all have answered."""
    command = [sys.executable, "-m", "bench.heartbeat.load"]
    procs = [
        subprocess.Popen(command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in jobs
    ]
    try:
        for proc, job in zip(procs, jobs, strict=True):
            proc.stdin.write(json.dumps(job) + "\n")
            proc.stdin.flush()
        for proc in procs:
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("a load process failed to connect")
        before, began = cpu.sample(), time.monotonic()
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [json.loads(proc.stdout.readline()) for proc in procs]
        elapsed = time.monotonic() - began
        after = cpu.sample()
    finally:
        for proc in procs:
            proc.stdin.close()
            proc.wait(30)
    return Measured(result=merged(results), usage=PortalCpu.usage(before, after), elapsed_s=elapsed)


def _load_jobs(agents, *, mode: str, args) -> list[dict]:
    # Round-robin, so that each process's agents are spread evenly over the interval.
    return [
        _job(
            agents[number :: args.processes],
            len(agents),
            port=args.port,
            mode=mode,
            connections=args.connections,
            interval=args.interval,
            duration=args.duration,
            drain_s=300.0 if mode == "burst" else 15.0,
        )
        for number in range(args.processes)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1250)
    parser.add_argument("--interval", type=float, default=10.0, help="heartbeat and telemetry interval (s)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--per-request", type=int, default=300, help="requests of each kind in phase 1")
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections per load process")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)

    started = time.monotonic()
    print(f"Load average (1/5/15 min) at start: {_load_average()} on {os.cpu_count()} CPUs, shared with other work")
    services = services_start()
    print(f"Setting up {args.agents} simulated nodes ({SIMULATION} each, SIMULATED GPUs) …", flush=True)
    agents = nodes_create(args.agents)
    from django.conf import settings

    pool = settings.DATABASES["default"]["OPTIONS"].get("pool")
    print(f"Database connections of a portal process: {'pool ' + json.dumps(pool) if pool else 'no pool'}")
    web_log = services.data_dir / "bench-heartbeat-web.log"
    print(f"Web: 1 uvicorn process, output in {web_log}")
    web = web_start(services.env, args.port, web_log)
    try:
        cpu = PortalCpu(
            web_pids=[web.pid],
            postmaster_pid=services.postmaster_pid,
            database=DATABASE,
            redis_pid=redis_pid_find(services.redis_port),
        )
        print("Warm-up: one heartbeat and one telemetry report per agent …", flush=True)
        warm = _measure(_load_jobs(agents, mode="burst", args=args), cpu)
        if any(status not in ("200", "202") for counts in warm.result["statuses"].values() for status in counts):
            print(f"   warm-up answers: {warm.result['statuses']}")
        print("Per-request phase …", flush=True)
        rows = {}
        for kind, _ in PER_REQUEST_KINDS:
            chosen = agents[: args.per_request]
            job = _job(chosen, len(agents), port=args.port, mode="sequential", kind=kind, count=args.per_request)
            rows[kind] = _measure([job], cpu)
        print(f"Load phase ({args.duration:g} s) …", flush=True)
        load = _measure(_load_jobs(agents, mode="pairs", args=args), cpu)
    finally:
        web_stop(web)
    costs = per_request_print(rows, args.per_request)
    connections = f"{args.processes} load processes × {args.connections} keep-alive connections, {args.duration:g} s"
    load_print(agents=args.agents, interval=args.interval, load=load, costs=costs, connections=connections)
    print(
        "\nweb = the uvicorn process. PG = the PostgreSQL backends connected to it, and backends (or autovacuum\n"
        "workers) that exited meanwhile. PG bg = PostgreSQL's long-lived other processes (checkpointer, WAL\n"
        "writer, I/O workers, ...), not in the portal's figure; nor is the load generator, which shares the\n"
        "machine. Not part of this benchmark: the agents' workload long-polls (GET /api/v1/agent/workloads,\n"
        "one per agent every 25 s when idle) and a new TCP connection per request (the real agent's urllib\n"
        "does not keep connections alive)."
    )
    print(f"Load average (1/5/15 min) at end: {_load_average()}; the benchmark took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
