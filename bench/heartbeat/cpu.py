"""CPU accounting of the heartbeat benchmark: whose CPU seconds are the portal's.

- web: the uvicorn process(es), user + system, all threads.
- workers: the Celery worker and beat processes (and their live children): the liveness sweep
  that marks silent nodes down, and whatever the reports enqueue.
- PostgreSQL backends serving them: the postmaster's client backends connected to the benchmark's
  database (process title `postgres: <user> <database> …`; the benchmark closes its own connection
  before it measures, so every such backend belongs to a web process), plus the CPU of the
  postmaster's children that exited while measured. Those are the backends of a portal without a
  connection pool, which live for one request, and also any autovacuum worker that finished (a
  cost of the reports' writes too; in a pooled run the whole term is a fraction of a second).
- PostgreSQL background: the long-lived others (checkpointer, WAL writer, background writer, I/O
  workers, autovacuum launcher, a running autovacuum worker) and the postmaster itself.
- Redis: the embedded redis-server (telemetry announces itself to the operators' live pages).
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


@dataclass
class Sample:
    web: float
    workers: float
    backends: dict[int, float]  # pid -> CPU seconds of each client backend of the database
    exited: float  # CPU seconds of the postmaster's children that have exited (it reaped them)
    background: float
    redis: float


@dataclass
class Usage:
    """CPU seconds spent between two samples."""

    web: float
    workers: float
    pg_backends: float
    pg_background: float
    redis: float

    @property
    def portal(self) -> float:
        """What the issue asks for: every portal process (web, workers), the PostgreSQL backends
        serving them and Redis. PostgreSQL's background processes are printed apart."""
        return self.web + self.workers + self.pg_backends + self.redis


class PortalCpu:
    def __init__(
        self, *, web_pids: list[int], worker_pids: list[int], postmaster_pid: int, database: str, redis_pid: int | None
    ):
        self.web = [psutil.Process(pid) for pid in web_pids]
        self.workers = [psutil.Process(pid) for pid in worker_pids]
        self.postmaster = psutil.Process(postmaster_pid)
        self.database = database
        self.redis = psutil.Process(redis_pid) if redis_pid else None

    def sample(self) -> Sample:
        backends: dict[int, float] = {}
        background = 0.0
        for child in self.postmaster.children():
            try:
                title = " ".join(child.cmdline())
                cpu = _cpu(child)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            # Title of a client backend: "postgres: <user> <database> <client> <activity>".
            words = title.split()
            if len(words) >= 3 and words[0] == "postgres:" and words[2] == self.database:
                backends[child.pid] = cpu
            else:
                background += cpu
        times = self.postmaster.cpu_times()
        return Sample(
            web=sum(_cpu(proc) for proc in self.web),
            workers=sum(_tree_cpu(proc) for proc in self.workers),
            backends=backends,
            exited=times.children_user + times.children_system,
            background=background + times.user + times.system,
            redis=_cpu(self.redis) if self.redis else 0.0,
        )

    @staticmethod
    def usage(before: Sample, after: Sample) -> Usage:
        # A backend that started after `before` counts from 0; one that ended before `after` is in
        # the postmaster's reaped-children time.
        live = sum(cpu - before.backends.get(pid, 0.0) for pid, cpu in after.backends.items())
        return Usage(
            web=after.web - before.web,
            workers=after.workers - before.workers,
            pg_backends=live + after.exited - before.exited,
            pg_background=after.background - before.background,
            redis=after.redis - before.redis,
        )


def _tree_cpu(proc: psutil.Process) -> float:
    total = _cpu(proc)
    for child in proc.children(recursive=True):
        try:
            total += _cpu(child)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def redis_pid_find(port: int) -> int | None:
    """The redis-server listening on `port` (the embedded one of this data folder)."""
    for proc in psutil.process_iter(["name", "cmdline"]):
        # redis-server retitles itself "redis-server 127.0.0.1:<port>".
        title = " ".join(proc.info["cmdline"] or [])
        if "redis" in (proc.info["name"] or "") and (f":{port}" in title or f"--port {port}" in title):
            return proc.pid
    return None
