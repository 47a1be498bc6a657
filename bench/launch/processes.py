"""The processes one run starts, and how every one of them is stopped at the end.

Not tests/support's ManagedProcess: the agent here gets 40 s to stop its warm-pool servers before
it is killed, and the run also ends Jupyter servers that outlive their agent by design.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import REPO, BenchError


@dataclass
class Child:
    name: str
    popen: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def check(self) -> None:
        if not self.alive():
            raise BenchError(f"{self.name} exited with {self.popen.returncode}:\n{self.text()[-2000:]}")

    def stop(self, timeout: float = 20) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(5)


@dataclass
class Stack:
    """Everything this run started, stopped in reverse order by `close`."""

    work: Path
    logs: Path
    children: list[Child] = field(default_factory=list)
    proxy: Any = None  # devtools.proxy's front proxy, once started
    workload_root: Path | None = None
    bare_dirs: list[Path] = field(default_factory=list)
    bare_children: list[subprocess.Popen] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        with log.open("w") as handle:
            popen = subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        child = Child(name, popen, log)
        self.children.append(child)
        return child

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def agents(self) -> list[Child]:
        return [c for c in self.children if c.name.startswith("agent")]

    def close(self) -> None:
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # Django may not be set up yet
            pass
        for popen in self.bare_children:
            group_kill(popen)
        for child in reversed(self.agents()):
            child.stop(timeout=40)  # the agent stops its warm-pool servers on the way out
        self._workload_servers_kill()
        if self.proxy is not None:
            self.proxy.stop()
        for child in reversed([c for c in self.children if not c.name.startswith("agent")]):
            child.stop()
        for directory in self.bare_dirs:
            shutil.rmtree(directory, ignore_errors=True)
        if self.workload_root is not None:
            shutil.rmtree(self.workload_root, ignore_errors=True)
        # The embedded PostgreSQL and Redis of the data folder are left running, as the other
        # benchmarks and the portal's own commands leave them: other runs may be using them.

    def _workload_servers_kill(self) -> None:
        """Instance servers outlive their agent by design (the next run re-adopts them): end the
        ones this run's agent started, found by their root_dir under our workload root."""
        if self.workload_root is None:
            return
        import psutil

        marker = f"--ServerApp.root_dir={self.workload_root}"
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if any(arg.startswith(marker) for arg in (proc.info["cmdline"] or [])):
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    try:
                        os.killpg(proc.info["pid"], sig)
                        proc.wait(5)
                        break
                    except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
                        break
                    except psutil.TimeoutExpired:
                        continue


def group_kill(popen: subprocess.Popen) -> None:
    if popen.poll() is None:
        try:
            os.killpg(popen.pid, signal.SIGTERM)
            popen.wait(10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(5)


def condition_wait(
    predicate: Callable[[], Any], *, timeout: float, what: str, step: float = 0.1, watch: Sequence[Child] = ()
) -> Any:
    """Poll `predicate` until it returns something true (returned); a watched child that exits
    meanwhile, or the timeout, raises BenchError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in watch:
            child.check()
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
