"""Heartbeat benchmark: the portal's CPU seconds per minute while N node agents report.

1. Set up: its own database with N registered simulated 8-GPU nodes; one web process, a Celery
   worker and beat started as the run command starts them, on the embedded PostgreSQL and Redis
   of $PORTAL_DATA_DIR.
2. Warm-up: every agent sends one round of reports (not measured).
3. Per-request cost: one connection, one kind of request back to back; CPU per request of the web
   process and of the PostgreSQL backends serving it, next to two baselines through the same server.
4. Load: the /healthz baseline at the agents' request rate, then N agents, each its round of
   reports every interval, phase-shifted evenly, from several load-generator processes without
   Django over keep-alive connections.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .checks import correctness_print
from .cpu import PortalCpu, redis_pid_find
from .portal import (
    DATABASE,
    REPO,
    SIMULATION,
    SimulatedAgent,
    nodes_create,
    services_start,
    web_start,
    web_stop,
    workers_start,
)
from .report import PER_REQUEST_KINDS, Measured, load_print, merged, per_request_print, summary_print

# What one agent sends every interval: `combined` is the agent since telemetry rides on the
# heartbeat (one request); `separate` a heartbeat and then a telemetry report, as agents did before
# (and as an agent still does against a portal that does not take telemetry in the heartbeat).
ROUNDS = {"combined": ["heartbeat_telemetry"], "separate": ["heartbeat", "telemetry"]}


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
    """One load process per job; the portal's CPU is sampled from `go` until all have finished.
    Jobs and results travel as files (a result holds every latency: megabytes in a long run)."""
    with tempfile.TemporaryDirectory(prefix="bench-heartbeat-") as folder:
        procs, results_at = [], []
        try:
            for number, job in enumerate(jobs):
                job_path, result_path = Path(folder) / f"job-{number}.json", Path(folder) / f"result-{number}.json"
                job_path.write_text(json.dumps(job))
                results_at.append(result_path)
                command = [sys.executable, "-m", "bench.heartbeat.load", str(job_path), str(result_path)]
                procs.append(
                    subprocess.Popen(command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                )
            for proc in procs:
                if proc.stdout.readline().strip() != "ready":
                    raise RuntimeError("a load process failed to connect")
            before, began = cpu.sample(), time.monotonic()
            for proc in procs:
                proc.stdin.write("go\n")
                proc.stdin.flush()
            for proc in procs:
                if proc.wait() != 0:
                    raise RuntimeError(f"a load process exited with {proc.returncode}")
            elapsed = time.monotonic() - began
            after = cpu.sample()
            results = [json.loads(path.read_text()) for path in results_at]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    return Measured(result=merged(results), usage=PortalCpu.usage(before, after), elapsed_s=elapsed)


def _load_jobs(agents, *, mode: str, kinds: list[str], args, pause: dict | None = None) -> list[dict]:
    # Round-robin, so that each process's agents are spread evenly over the interval.
    return [
        _job(
            agents[number :: args.processes],
            len(agents),
            port=args.port,
            mode=mode,
            kinds=kinds,
            connections=args.connections,
            interval=args.interval,
            duration=args.duration,
            drain_s=300.0 if mode == "burst" else 15.0,
            pause=pause,
        )
        for number in range(args.processes)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1250)
    parser.add_argument("--interval", type=float, default=10.0, help="heartbeat and telemetry interval (s)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--per-request", type=int, default=300, help="requests of each kind in phase 1")
    parser.add_argument("--processes", type=int, default=4, help="load generator processes")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections per load process")
    parser.add_argument(
        "--reports",
        choices=sorted(ROUNDS),
        default="combined",
        help="per agent and interval: one heartbeat carrying telemetry, or a heartbeat and a telemetry report",
    )
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
    print(f"Web: 1 uvicorn process, output in {web_log}; a Celery worker (solo) and beat")
    web = web_start(services.env, args.port, web_log)
    workers: list[subprocess.Popen] = []
    kinds = ROUNDS[args.reports]
    try:
        workers = workers_start(services.env, services.data_dir)
        cpu = PortalCpu(
            web_pids=[web.pid],
            worker_pids=[proc.pid for proc in workers],
            postmaster_pid=services.postmaster_pid,
            database=DATABASE,
            redis_pid=redis_pid_find(services.redis_port),
        )
        # First, while no node has reported yet (the liveness sweep skips a node that never
        # reported): the baseline at the same request rate as the agents' (a /healthz per request).
        baseline_kinds = ["healthz"] * len(kinds)
        print(f"Baseline load phase: /healthz at the agents' rate ({args.duration:g} s) …", flush=True)
        baseline = _measure(_load_jobs(agents, mode="pairs", kinds=baseline_kinds, args=args), cpu)
        print("Per-request phase …", flush=True)
        rows = {}
        for kind, _ in PER_REQUEST_KINDS:
            chosen = agents[: args.per_request]
            job = _job(chosen, len(agents), port=args.port, mode="sequential", kind=kind, count=args.per_request)
            rows[kind] = _measure([job], cpu)
        print("Warm-up, right before the load (every node up and fresh): one round per agent …", flush=True)
        warm = _measure(_load_jobs(agents, mode="burst", kinds=kinds, args=args), cpu)
        if any(status not in ("200", "202") for counts in warm.result["statuses"].values() for status in counts):
            print(f"   warm-up answers: {warm.result['statuses']}")
        print(f"Load phase: agents' reports ({args.duration:g} s) …", flush=True)
        pause = _pause(args)
        load = _measure(_load_jobs(agents, mode="pairs", kinds=kinds, args=args, pause=pause), cpu)
    finally:
        web_stop(web)
        for proc in workers:
            web_stop(proc)
    costs = per_request_print(rows, args.per_request)
    connections = f"{args.processes} load processes × {args.connections} keep-alive connections, {args.duration:g} s"
    for label, phase, phase_kinds in (
        ("Baseline: /healthz", baseline, baseline_kinds),
        ("Agents' reports", load, kinds),
    ):
        load_print(
            label=label,
            agents=args.agents,
            interval=args.interval,
            load=phase,
            kinds=phase_kinds,
            connections=connections,
        )
    summary_print(agents=args.agents, interval=args.interval, load=load, baseline=baseline, kinds=kinds, costs=costs)
    print(
        "\nweb = the uvicorn process; workers = the Celery worker and beat. PG = the PostgreSQL backends\n"
        "connected to the benchmark's database (web and workers), and backends (or autovacuum workers)\n"
        "that exited meanwhile. PG bg = PostgreSQL's long-lived other processes (checkpointer, WAL writer,\n"
        "I/O workers, ...), printed apart; the load generator shares the machine and is not the portal's.\n"
        "Not part of this benchmark: the agents' workload long-polls (GET /api/v1/agent/workloads, one per\n"
        "agent every 25 s when idle) and a new TCP connection per request (the real agent's urllib does\n"
        "not keep connections alive)."
    )
    ok = correctness_print(agents=agents, load=load, pause=pause, interval=args.interval)
    print(f"Load average (1/5/15 min) at end: {_load_average()}; the benchmark took {time.monotonic() - started:.0f} s")
    return 0 if ok else 1


def _pause(args) -> dict | None:
    """One agent stops during the load, for three intervals from 10 s in, then comes back (needs
    a load of at least 10 s + 3 intervals + one interval to see it return)."""
    stop = 3 * args.interval
    if args.duration < 10 + stop + args.interval:
        return None
    return {"index": 0, "from": 10.0, "until": 10.0 + stop}


if __name__ == "__main__":
    sys.exit(main())
