"""The heartbeat benchmark's load generator: simulated node agents over keep-alive HTTP/1.1.

Runs as its own process (`python -m bench.heartbeat.load`), several at once, and imports neither
Django nor an HTTP client library: each request is pre-encoded bytes written to a raw asyncio
connection, and only the `seq` (and the heartbeat's `sent_at`) is formatted per request. The point
is to leave the CPUs to the portal, whose cost is what the benchmark measures; the generator's own
CPU is reported apart and never counted as the portal's.

Protocol with the parent: `python -m bench.heartbeat.load JOB RESULT`: the child reads its JSON
job from the file JOB, connects, prints `ready`, waits for a `go` line on stdin, runs, writes its
JSON result to the file RESULT and exits. Only those two short lines cross the pipes: a result of
any size (latency lists grow with the duration) goes through a file, never cut short by a pipe.
Modes:

- `pairs`: each agent sends its round of requests (`kinds`, by default a heartbeat and then a
  telemetry report, as `provisioning/agent/loop.py` did before it folded telemetry into the
  heartbeat) every `interval` seconds, agents phase-shifted evenly over the interval, for
  `duration` seconds (open loop: a late portal builds a queue here). `kinds: ["healthz",
  "healthz"]` offers the same rate of /healthz requests, the baseline.
- `burst`: every agent sends one round as fast as the connections allow (warm-up).
- `sequential`: one connection sends `count` requests of one `kind` back to back (per-request cost).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from datetime import UTC, datetime

_KINDS = ("heartbeat", "telemetry", "heartbeat_inventory", "heartbeat_telemetry", "healthz", "auth_noop")


class Agent:
    """One simulated agent: its pre-encoded headers and bodies and its message counter."""

    __slots__ = ("index", "auth", "telemetry", "inventory", "seq", "telemetry_around")

    def __init__(self, index: int, auth: str, telemetry: str, inventory: str, seq: int):
        self.index = index
        self.auth = auth.encode()
        self.telemetry = telemetry.encode()
        # Around the value of collected_at, which each report sets to now as the real agent does
        # (a fixed one would make every report after the first land in the same minute of
        # history and write none of it).
        head, marker, rest = self.telemetry.partition(b'"collected_at": "')
        self.telemetry_around = (head + marker, rest[rest.index(b'"') :]) if marker else None
        self.inventory = inventory.encode()
        self.seq = seq

    def telemetry_now(self) -> bytes:
        if self.telemetry_around is None:
            return self.telemetry
        now = datetime.now(UTC).isoformat(timespec="milliseconds").encode()
        return self.telemetry_around[0] + now + self.telemetry_around[1]

    def seq_take(self) -> int:
        self.seq += 1
        return self.seq


class Requests:
    """Builds the raw request bytes, with the headers the real agent's client sends."""

    def __init__(self, host: str, port: int):
        self.host = f"{host}:{port}".encode()

    def _post(self, path: bytes, agent: Agent, body: bytes) -> bytes:
        return b"".join(
            (
                b"POST ",
                path,
                b" HTTP/1.1\r\nHost: ",
                self.host,
                b"\r\nAuthorization: Node ",
                agent.auth,
                b"\r\nContent-Type: application/json\r\nAccept: application/json\r\n"
                b"User-Agent: neocloud-agent/1\r\nContent-Length: ",
                str(len(body)).encode(),
                b"\r\n\r\n",
                body,
            )
        )

    def build(self, kind: str, agent: Agent) -> bytes:
        if kind == "heartbeat" or kind == "heartbeat_inventory":
            sent_at = datetime.now(UTC).isoformat(timespec="milliseconds").encode()
            inventory = agent.inventory if kind == "heartbeat_inventory" else b"null"
            body = b'{"seq": %d, "sent_at": "%s", "inventory": %s}' % (agent.seq_take(), sent_at, inventory)
            return self._post(b"/api/v1/agent/heartbeat", agent, body)
        if kind == "heartbeat_telemetry":  # the agent's report since telemetry rides on the heartbeat
            sent_at = datetime.now(UTC).isoformat(timespec="milliseconds").encode()
            body = b'{"seq": %d, "sent_at": "%s", "inventory": null, "telemetry": %s}' % (
                agent.seq_take(),
                sent_at,
                agent.telemetry_now(),
            )
            return self._post(b"/api/v1/agent/heartbeat", agent, body)
        if kind == "telemetry":
            body = b'{"seq": %d, "telemetry": %s}' % (agent.seq_take(), agent.telemetry_now())
            return self._post(b"/api/v1/agent/telemetry", agent, body)
        if kind == "healthz":
            return b"GET /healthz HTTP/1.1\r\nHost: " + self.host + b"\r\n\r\n"
        if kind == "auth_noop":
            # An authenticated request that does nothing else: DRF authenticates before it finds no
            # GET handler, so this is the fixed cost of an agent call (framework + credential check).
            return (
                b"GET /api/v1/agent/heartbeat HTTP/1.1\r\nHost: "
                + self.host
                + b"\r\nAuthorization: Node "
                + agent.auth
                + b"\r\nAccept: application/json\r\n\r\n"
            )
        raise ValueError(kind)


class Connection:
    """One keep-alive connection; reconnects after an error or a `Connection: close`."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, raw: bytes) -> int:
        """The response's status; 0 when the connection failed (it is reopened)."""
        try:
            if self.writer is None:
                await self.open()
            self.writer.write(raw)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            lowered = head.lower()
            start = lowered.find(b"\r\ncontent-length:")
            if start < 0:  # Django sets it on every response these endpoints give
                raise ConnectionError("response without Content-Length")
            end = lowered.find(b"\r\n", start + 2)
            await self.reader.readexactly(int(lowered[start + 17 : end]))
            if b"\r\nconnection: close" in lowered:
                self.close()
            return status
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            self.close()
            return 0

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Recorder:
    def __init__(self) -> None:
        self.latency_ms: dict[str, list[float]] = {kind: [] for kind in _KINDS}
        self.statuses: dict[str, dict[str, int]] = {kind: {} for kind in _KINDS}
        self.lag_ms: list[float] = []  # how long a due pair waited for a free connection
        self.late_pairs = 0
        self.unsent_pairs = 0
        self.accepted_seq: dict[int, int] = {}  # agent index -> highest seq of a heartbeat answered 200
        self.beats: dict[int, list[float]] = {}  # the paused agent: wall times of its accepted heartbeats

    async def send(self, connection: Connection, requests: Requests, kind: str, agent: Agent) -> None:
        began = time.perf_counter()
        raw = requests.build(kind, agent)
        seq = agent.seq
        status = await connection.request(raw)
        self.latency_ms[kind].append(1000 * (time.perf_counter() - began))
        counts = self.statuses[kind]
        counts[str(status)] = counts.get(str(status), 0) + 1
        if status == 200 and kind.startswith("heartbeat"):
            self.accepted_seq[agent.index] = max(seq, self.accepted_seq.get(agent.index, 0))
            if agent.index in self.beats:
                self.beats[agent.index].append(time.time())


async def _pairs(job: dict, agents: list[tuple[float, Agent]], connections: list[Connection], rec: Recorder) -> None:
    loop = asyncio.get_running_loop()
    requests = Requests(job["host"], job["port"])
    queue: asyncio.Queue = asyncio.Queue()
    interval, duration = job["interval"], job["duration"]
    kinds = job.get("kinds") or ["heartbeat", "telemetry"]
    # The stopped agent (the correctness check): sends nothing due in [stop_from, stop_until).
    pause = job.get("pause") or {}
    if pause:
        rec.beats.setdefault(pause["index"], [])

    async def worker(connection: Connection) -> None:
        while True:
            due, agent = await queue.get()
            lag = loop.time() - due
            rec.lag_ms.append(1000 * lag)
            if lag > interval:  # the real agent would already be due again
                rec.late_pairs += 1
            for kind in kinds:
                await rec.send(connection, requests, kind, agent)
            queue.task_done()

    workers = [asyncio.create_task(worker(connection)) for connection in connections]
    start = loop.time()
    if job["mode"] == "burst":
        for _, agent in agents:
            queue.put_nowait((start, agent))
    else:
        tick = 0
        while start + tick * interval < start + duration:
            for offset, agent in agents:
                due = start + tick * interval + offset
                if due >= start + duration:
                    break
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if pause and agent.index == pause["index"] and pause["from"] <= due - start < pause["until"]:
                    continue
                queue.put_nowait((due, agent))
            tick += 1
    try:
        # What is still queued after a grace period was not sent: the portal did not keep up.
        await asyncio.wait_for(queue.join(), timeout=job.get("drain_s", 15.0))
    except TimeoutError:
        rec.unsent_pairs = queue.qsize()
    for task in workers:
        task.cancel()


async def _sequential(job: dict, agents: list[tuple[float, Agent]], connection: Connection, rec: Recorder) -> None:
    requests = Requests(job["host"], job["port"])
    for number in range(job["count"]):
        await rec.send(connection, requests, job["kind"], agents[number % len(agents)][1])


async def _run(job: dict) -> dict:
    total, interval = job["total_agents"], job.get("interval", 10.0)
    agents = [
        (interval * index / total, Agent(index, auth, telemetry, inventory, job["seq_base"]))
        for index, auth, telemetry, inventory in job["agents"]
    ]
    count = 1 if job["mode"] == "sequential" else job["connections"]
    connections = [Connection(job["host"], job["port"]) for _ in range(count)]
    await asyncio.gather(*(connection.open() for connection in connections))
    rec = Recorder()
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # "go"
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    began = time.monotonic()
    if job["mode"] == "sequential":
        await _sequential(job, agents, connections[0], rec)
    else:
        await _pairs(job, agents, connections, rec)
    elapsed = time.monotonic() - began
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    for connection in connections:
        connection.close()
    return {
        "elapsed_s": elapsed,
        "cpu_s": (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime),
        "latency_ms": rec.latency_ms,
        "statuses": rec.statuses,
        "lag_ms": rec.lag_ms,
        "late_pairs": rec.late_pairs,
        "unsent_pairs": rec.unsent_pairs,
        "accepted_seq": rec.accepted_seq,
        "beats": rec.beats,
    }


def main(argv: list[str]) -> int:
    job_path, result_path = argv
    with open(job_path) as file:
        job = json.load(file)
    try:
        import uvloop  # in the venv with uvicorn[standard]; lighter per request than asyncio's loop

        result = uvloop.run(_run(job))
    except ImportError:
        result = asyncio.run(_run(job))
    # Written whole, then renamed: the parent never reads half a result.
    with open(result_path + ".part", "w") as file:
        json.dump(result, file)
    os.replace(result_path + ".part", result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
