"""Where one agent report's time goes, in-process: `python -m bench.heartbeat.profile [--count 300]`.

For each kind of report (a steady-state heartbeat, one carrying an unchanged inventory, a telemetry
report, a heartbeat carrying telemetry, and /healthz as the floor) it sends `--count` requests
through Django's full stack in this process — the ASGI handler (`AsyncClient`, as uvicorn calls it)
and, for the profile, the same middleware, authentication, view and SQL through the test `Client`
(cProfile sees one thread only, and the ASGI handler runs the view in another) — and prints:

- CPU-ms per request (this process, every thread) through the ASGI handler and through the test
  client, the difference being the ASGI hops (event loop <-> thread);
- the SQL of one request (an execute wrapper): how many statements and which;
- the cProfile of `--count` requests: the largest cumulative entries, so middleware,
  authentication, serializer, SQL and commit can be told apart.

Then the lean path (apps/capacity/api/fast.py), which answers the agents' steady-state reports in
production, in its two halves: a report taken on the event loop (no query), and a flush of a batch
of 32 nodes' reports (one statement), CPU per node here and in the PostgreSQL backend.

It uses its own database (`bench_heartbeat_profile`) on the embedded servers of $PORTAL_DATA_DIR,
so it can run next to the benchmark. PostgreSQL's own CPU is not in these figures (see the
benchmark for that).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import re
import sys
import time
from datetime import UTC, datetime

from .portal import nodes_create, services_start

KINDS = ["healthz", "heartbeat", "heartbeat_inventory", "telemetry", "heartbeat_telemetry"]
# Nodes per flush in the lean path's profile: what one web process takes in a flush period at
# 1,250 agents every 10 s (125 a second, flushed 4 times a second).
FLUSH_BATCH = 32


def _cpu_profiled(work, count: int, top: int) -> tuple[float, str]:
    """CPU-ms per call of `work` in this process, and the cProfile of another `count` calls."""
    began = time.process_time()
    for _ in range(count):
        work()
    per_call = 1000 * (time.process_time() - began) / count
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(count):
        work()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    return per_call, "\n".join(line for line in out.getvalue().splitlines() if line.strip())[-6000:]


def lean_print(*, agents, seq: list[int], count: int, top: int) -> None:
    """The lean path of apps/capacity/api/fast.py in its two halves: taking a report on the event
    loop (parse, checks, cached credential, into the buffer: no query), and the flush that writes a
    batch of FLUSH_BATCH nodes' reports in one statement (this process's CPU and the PostgreSQL
    backend's, per node)."""
    import psutil
    from django.db import connection

    from apps.capacity.api.fast import HEARTBEAT_PATH, AgentReportsFastPath
    from apps.capacity.services.report_buffer import ReportBuffer

    buffer = ReportBuffer()
    app = AgentReportsFastPath(None, buffer=buffer, flush_every=None)
    loop = asyncio.new_event_loop()

    def take(kind: str, agent) -> None:
        seq[0] += 1
        _, path, body = _request(kind, agent, seq[0])
        assert path == HEARTBEAT_PATH
        answer = loop.run_until_complete(app._answer(path, f"Node {agent.auth}", body))
        assert answer is not None and answer[0] == 200, answer

    for kind in ("heartbeat", "heartbeat_telemetry"):
        for agent in agents:  # their credentials cached, as in the steady state
            take(kind, agent)
        buffer.flush()
        per_take, profile = _cpu_profiled(lambda kind=kind: take(kind, agents[0]), count, top)
        print(f"\n=== {kind} taken on the lean path (AgentReportsFastPath._answer): CPU-ms per report {per_take:.3f}")
        print(profile)
        buffer.flush()

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = psutil.Process(cursor.fetchone()[0])

        def batch(kind=kind) -> None:
            for agent in agents:
                take(kind, agent)
            buffer.flush()

        rounds = max(count // len(agents), 10)
        for _ in range(3):
            batch()
        pg_before, began = sum(backend.cpu_times()[:2]), time.process_time()
        for _ in range(rounds):
            batch()
        here = 1000 * (time.process_time() - began) / rounds
        pg = 1000 * (sum(backend.cpu_times()[:2]) - pg_before) / rounds
        taking = per_take * len(agents)
        print(
            f"\n=== {kind}: a flush of {len(agents)} nodes, one statement: CPU-ms per node "
            f"here {(here - taking) / len(agents):.3f} (taking excluded), PostgreSQL backend {pg / len(agents):.3f}"
        )
        _, profile = _cpu_profiled(batch, rounds, top)
        print(profile)
    loop.close()


def _request(kind: str, agent, seq: int) -> tuple[str, str, bytes | None]:
    sent_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    # Collected now, as the real agent's telemetry is (a fixed time would write no history).
    telemetry = re.sub(r'"collected_at": "[^"]*"', f'"collected_at": "{sent_at}"', agent.telemetry)
    if kind == "healthz":
        return "get", "/healthz", None
    if kind == "telemetry":
        return "post", "/api/v1/agent/telemetry", f'{{"seq": {seq}, "telemetry": {telemetry}}}'.encode()
    body = {"seq": seq, "sent_at": sent_at, "inventory": None}
    text = json.dumps(body)[:-1]
    if kind == "heartbeat_inventory":
        text = text.replace('"inventory": null', f'"inventory": {agent.inventory}')
    if kind == "heartbeat_telemetry":
        text += f', "telemetry": {telemetry}'
    return "post", "/api/v1/agent/heartbeat", (text + "}").encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    services_start(database="bench_heartbeat_profile")
    agents = nodes_create(FLUSH_BATCH)
    from django.conf import settings
    from django.db import connection
    from django.test import AsyncClient, Client

    settings.ALLOWED_HOSTS.append("testserver")  # the test clients' host
    agent = agents[0]
    headers = {"Authorization": f"Node {agent.auth}"}
    client, aclient = Client(), AsyncClient()
    seq = [time.time_ns() // 1000]

    def call(kind: str, use=None):
        seq[0] += 1
        method, path, body = _request(kind, agent, seq[0])
        use = use or client
        if method == "get":
            return use.get(path, headers=headers)
        return use.post(path, data=body, content_type="application/json", headers=headers)

    async def acall_many(kind: str, count: int) -> None:
        for _ in range(count):
            response = await call(kind, aclient)
            assert response.status_code in (200, 202), (kind, response.status_code, response.content[:300])

    for kind in KINDS:
        for _ in range(30):  # warm: caches, pool, plans
            response = call(kind)
            assert response.status_code in (200, 202), (kind, response.status_code, response.content[:300])
        began = time.process_time()
        asyncio.run(acall_many(kind, args.count))
        asgi_ms = 1000 * (time.process_time() - began) / args.count
        began = time.process_time()
        for _ in range(args.count):
            call(kind)
        client_ms = 1000 * (time.process_time() - began) / args.count
        # Not CaptureQueriesContext: the request_started signal empties the log it reads.
        statements: list[str] = []

        def capture(execute, sql, params, many, context, statements=statements):
            statements.append(sql)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(capture):
            call(kind)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.count):
            call(kind)
        profiler.disable()
        print(
            f"\n=== {kind}: CPU-ms per request in this process: ASGI handler {asgi_ms:.2f}, test client {client_ms:.2f}"
        )
        print(f"SQL statements of one request: {len(statements)}")
        for sql in statements:
            print(f"   {' '.join(sql.split())[:160]}")
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(args.top)
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[-6000:])
    lean_print(agents=agents, seq=seq, count=args.count, top=args.top)
    connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
