"""Starting and watching the portal's processes from development tools: the test suite's
real-process fixtures and the benchmarks share these, so neither imports the other."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from provisioning.agent.workloads.notebook import workload_root_clear

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A loopback port nobody listens on right now (the caller binds it soon after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url(db: dict) -> str:
    """A DATABASE_URL for one entry of Django's DATABASES, so a child process reaches the same
    database as this one (the test database pytest-django created, for instance)."""
    host = quote(db["HOST"], safe="") if db["HOST"].startswith("/") else db["HOST"]
    port = f":{db['PORT']}" if db.get("PORT") else ""
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    return f"postgresql://{db['USER']}{password}@{host}{port}/{db['NAME']}"


@dataclass
class ManagedProcess:
    name: str
    process: subprocess.Popen
    log_path: Path
    # Processes it may leave behind by design (an agent's notebook servers outlive the agent),
    # found by this path in their command line and ended with it.
    leaves_behind: str | None = None

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        if self.leaves_behind:
            # An agent leaves its notebook servers running (it re-adopts them); these tests and
            # tools do not come back for them: stop them and remove their accounts.
            workload_root_clear(Path(self.leaves_behind))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def assert_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n{self.log()[-3000:]}")


def spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> ManagedProcess:
    """Start `argv` in the repository with exactly `env` (which must carry DATABASE_URL and
    REDIS_URL: the settings start nothing), its output in `log_dir/<name>.log`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    handle = log_path.open("w")
    process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    return ManagedProcess(name=name, process=process, log_path=log_path)


def wait_http_ok(url: str, managed: ManagedProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        managed.assert_alive()
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s:\n{managed.log()[-3000:]}")


def wait_log(managed: ManagedProcess, needle: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        managed.assert_alive()
        if needle in managed.log():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{managed.name} did not log {needle!r} within {timeout} s:\n{managed.log()[-3000:]}")
