"""How each of the portal's processes is started: one place, used by the run command, the
test suite's real-process fixtures and the benchmarks, so they all run what production runs."""

from __future__ import annotations

import sys
from pathlib import Path


def web_command(*, port: int, host: str = "127.0.0.1") -> list[str]:
    """The ASGI server (HTTP, websockets). Behind the front proxy it listens on loopback only."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "portal.asgi:application",
        "--host",
        host,
        "--port",
        str(port),
        "--no-access-log",
        # On: its shutdown is where the web process writes the agent reports it answered but has
        # not stored yet (apps/capacity/api/fast.py); uvicorn gives an app no other moment.
        "--lifespan",
        "on",
    ]


def worker_command(*, concurrency: int = 2, solo: bool = False, name: str | None = None) -> list[str]:
    """A Celery worker. Several on one broker each need their own `name` (Celery's node name,
    `name@host`): two with the same one on a host would be taken for one by remote control."""
    pool = ["--pool", "solo"] if solo else ["--concurrency", str(concurrency)]
    node = ["--hostname", f"{name}@%h"] if name else []
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "portal",
        "worker",
        "--loglevel",
        "INFO",
        *pool,
        *node,
        "--without-gossip",
        "--without-mingle",
    ]


def beat_command(*, schedule: Path) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "portal", "beat", "--loglevel", "INFO", "--schedule", str(schedule)]


def agent_command(
    *,
    portal_url: str,
    state_file: Path,
    workload_root: Path,
    notebook_pool: int,
    token: str | None = None,
    simulate: str | None = None,
    hostname: str | None = None,
    telemetry_interval_s: float | None = None,
    address: str | None = None,
    ssh_ports: tuple[int, int] | None = None,
) -> list[str]:
    """The node agent (provisioning/agent). Without `simulate` it reads the host's GPUs via NVML."""
    command = [
        sys.executable,
        "-m",
        "provisioning.agent.main",
        "--portal",
        portal_url,
        "--state-file",
        str(state_file),
        "--workload-root",
        str(workload_root),
        "--notebook-pool",
        str(notebook_pool),
    ]
    if token:
        command += ["--token", token]
    if simulate:
        command += ["--simulate", simulate]
    if hostname:
        command += ["--hostname", hostname]
    if telemetry_interval_s is not None:
        command += ["--telemetry-interval", str(telemetry_interval_s)]
    if address:
        command += ["--address", address]
    if ssh_ports:
        command += ["--ssh-ports", f"{ssh_ports[0]}-{ssh_ports[1]}"]
    return command
