"""The warm pool: JupyterLab servers started ahead of demand, so a launch is a hand-out.

A pooled server has its own slot (route `/nb/<random uuid>/`, account, socket) and no GPUs: its
kernelspec's launcher reads the slot's assignment file when a kernel starts, and the agent
writes that file (and re-points the slot's `work` link) when it hands the server out. A handed-out
server belongs to its instance from then on: when that instance stops, the server is killed,
never put back (it has held someone's files and kernels). The pool refills in the background,
one server at a time so that refills do not starve the cold starts sharing the host's CPUs.

Pool servers run with the default options only (no image jupyter_args): a spec with
jupyter_args gets a cold start.
"""

from __future__ import annotations

import logging
import threading
import uuid

from .notebook import (
    NotebookConfig,
    NotebookServer,
    StartCancelled,
    StartFailed,
    server_alive,
    server_ready_wait,
    server_start,
    server_stop,
)

log = logging.getLogger("neocloud.agent")

_BACKOFF_MAX_S = 300.0


class WarmPool:
    def __init__(self, size: int, config: NotebookConfig):
        self.size = size
        self.config = config
        self.started = 0  # servers this pool has started, ready or not (for tests and logs)
        self._ready: list[NotebookServer] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.size > 0:
            self._thread = threading.Thread(target=self._run, name="notebook-pool", daemon=True)
            self._thread.start()

    def take(self, jupyter_args: tuple[str, ...] = ()) -> NotebookServer | None:
        """A ready server, removed from the pool, or None. Call `refill` once it is handed out:
        a refill started at once competes for the CPU with the hand-out it should not delay."""
        if jupyter_args or self.size <= 0 or self._closed.is_set():
            return None
        taken = None
        with self._lock:
            while self._ready and taken is None:
                server = self._ready.pop(0)
                if server_alive(server):
                    taken = server
                else:
                    log.warning("warm-pool server %s died while waiting; dropped",
                                server.route_slot)
                    threading.Thread(target=server_stop, args=(server,), daemon=True).start()
        if taken is None:
            self._wake.set()
        return taken

    def refill(self) -> None:
        self._wake.set()

    def ready_count(self) -> int:
        with self._lock:
            return len(self._ready)

    def ready_servers(self) -> list[NotebookServer]:
        with self._lock:
            return list(self._ready)

    def shutdown(self) -> None:
        """Stop refilling and kill the servers still waiting in the pool."""
        self._closed.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            waiting, self._ready = self._ready, []
        for server in waiting:
            server_stop(server)

    def _run(self) -> None:
        failures = 0
        while not self._closed.is_set():
            self._prune()
            with self._lock:
                missing = self.size - len(self._ready)
            if missing <= 0:
                self._wake.wait(timeout=10)
                self._wake.clear()
                continue
            if self._start_one():
                failures = 0
            else:
                failures += 1
                self._closed.wait(min(_BACKOFF_MAX_S, 5.0 * 2 ** (failures - 1)))

    def _start_one(self) -> bool:
        route_slot = str(uuid.uuid4())
        try:
            server = server_start(self.config, route_slot=route_slot, instance_id=None, gpus=[],
                                  jupyter_args=[])
        except (StartFailed, OSError) as exc:
            log.warning("warm-pool server could not start: %s", exc)
            return False
        self.started += 1
        try:
            server_ready_wait(server, self.config.start_timeout_s, self._closed.is_set)
        except StartCancelled:
            server_stop(server)
            return True
        except StartFailed as exc:
            log.warning("warm-pool server did not come up: %s", exc)
            server_stop(server)
            return False
        with self._lock:
            self._ready.append(server)
        log.info("warm-pool server ready as %s (%d/%d ready)", server.run_as.name,
                 len(self._ready), self.size)
        return True

    def _prune(self) -> None:
        with self._lock:
            alive = {id(server): server_alive(server) for server in self._ready}
            dead = [server for server in self._ready if not alive[id(server)]]
            self._ready = [server for server in self._ready if alive[id(server)]]
        for server in dead:
            log.warning("warm-pool server %s died while waiting; dropped", server.route_slot)
            server_stop(server)
