"""The portal as several processes on one database and one Redis, as `make run` starts it with
PORTAL_WEB_WORKERS / PORTAL_CELERY_WORKERS and as production runs it: N web processes (each its
own uvicorn on its own loopback port) behind one front proxy, and M Celery workers."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from devtools.commands import web_command, worker_command
from devtools.proxy import FrontProxy, front_proxy_start
from tests.support.processes import ManagedProcess, free_port, process_env, spawn, wait_http_ok, wait_log


@dataclass
class MultiPortal:
    url: str  # the front proxy, as browsers and agents reach the portal
    web: list[ManagedProcess]
    web_urls: list[str]  # each web process directly, to pin a request or a socket to one
    workers: list[ManagedProcess] = field(default_factory=list)
    proxy: FrontProxy | None = None

    def workers_pause(self) -> None:
        """Freeze every worker (SIGSTOP to its process group): what is enqueued waits in Redis."""
        for worker in self.workers:
            os.killpg(worker.process.pid, signal.SIGSTOP)

    def workers_resume(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                os.killpg(worker.process.pid, signal.SIGCONT)

    def web_kill(self, index: int) -> None:
        """SIGKILL one web process, as a crash or an OOM kill would: no graceful shutdown."""
        process = self.web[index].process
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        self.workers_resume()  # a stopped process would only act on SIGTERM once continued
        if self.proxy is not None:
            self.proxy.stop()
        for managed in [*self.web, *self.workers]:
            managed.stop()


def multi_portal_start(log_dir: Path, *, web: int, workers: int, concurrency: int = 2) -> MultiPortal:
    """`web` web processes and `workers` Celery workers on the test database, behind nginx."""
    proxy_port = free_port()
    url = f"http://127.0.0.1:{proxy_port}"
    # A queue of its own: the test session's worker and beat share this Redis, and would otherwise
    # run this portal's tasks (a launch "paused" by SIGSTOP to these workers was placed by the
    # session's worker) and send it theirs.
    env = process_env(PORTAL_BASE_URL=url, PORTAL_CELERY_QUEUE=f"multi-{os.getpid()}")
    ports: list[int] = []
    while len(ports) < web:
        if (port := free_port()) not in ports and port != proxy_port:
            ports.append(port)
    portal = MultiPortal(url=url, web=[], web_urls=[f"http://127.0.0.1:{port}" for port in ports])
    try:
        for index, port in enumerate(ports, start=1):
            portal.web.append(spawn(f"multi-web-{index}", web_command(port=port), env, log_dir))
        for index in range(1, workers + 1):
            command = worker_command(concurrency=concurrency, name=f"multi-worker-{index}-{os.getpid()}")
            portal.workers.append(spawn(f"multi-worker-{index}", command, env, log_dir))
        for managed, web_url in zip(portal.web, portal.web_urls, strict=True):
            wait_http_ok(f"{web_url}/healthz", managed)
        for worker in portal.workers:
            wait_log(worker, "ready.")
        portal.proxy = front_proxy_start(
            root=log_dir / "nginx-multi",
            listen=f"127.0.0.1:{proxy_port}",
            portal=[f"127.0.0.1:{port}" for port in ports],
            secret=env["PORTAL_PROXY_SECRET"],
        )
    except BaseException:
        portal.stop()
        raise
    return portal
