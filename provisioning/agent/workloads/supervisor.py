"""Converge this node's notebook servers to the desired state, and report what they really do.

One thread per workload that has something to do (start, stop, watch a running server), so a
cold start that takes seconds never delays another instance's hand-out or stop. That thread is
the only one that touches its workload's server and reports about it, so reports of one
workload leave in the order its states happened; `seq` is taken when a report is sent.

Rules worth knowing (the portal relies on them):
- "stopped" is reported only when the desired state is not running: for a running instance the
  portal reads "stopped" as an unexpected end.
- A start that failed is not retried for the same spec: the portal marks the instance failed and
  desires it stopped; a later "running" (a new start by the user) starts it again.
- A server that exits on its own is reported "failed" with the end of its output.
- A 404 on a report means the portal does not know the instance: its server is stopped and
  nothing more is reported about it in this agent run.
- On agent shutdown, instance servers keep running (the next agent run re-adopts them, see
  `adopt`); servers still starting are stopped; the pool's own servers are stopped by the pool.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from provisioning.protocol import (
    DESIRED_DELETED,
    DESIRED_STOPPED,
    FAILED,
    KIND_NOTEBOOK,
    RUNNING,
    STARTING,
    STOPPED,
    NotebookSpec,
    WorkloadSpec,
    report_body,
    report_transition_allowed,
)

from ..client import (
    STATUS_UNKNOWN,
    AgentStopping,
    CredentialRejected,
    PortalRejected,
    PortalUnavailable,
)
from . import slot
from .notebook import (
    NotebookConfig,
    NotebookServer,
    StartCancelled,
    StartFailed,
    jupyter_args_refusal,
    server_activity,
    server_adopt,
    server_alive,
    server_assign,
    server_exit_reason,
    server_ready_wait,
    server_start,
    server_stop,
)
from .pool import WarmPool
from .spec import specs_parse

log = logging.getLogger("neocloud.agent")

_LIVENESS_S = 2.0  # how often a running server's process is checked (cheap: a waitpid)

# (instance id, report body without seq) -> client.STATUS_*; may raise like PortalClient does.
Report = Callable[[str, dict], str]


@dataclass
class Workload:
    id: str
    desired: WorkloadSpec | None  # None: adopted from an earlier run, no desired state yet
    server: NotebookServer | None = None
    reported: str | None = None  # the last state we reported (or tried to)
    unsent: dict | None = None  # a report that did not get through: repeated at the next tick
    failed_spec: WorkloadSpec | None = None  # not retried while the spec stays the same
    unknown: bool = False  # the portal answered 404: it does not know this instance
    next_activity: float = 0.0
    wake: threading.Event = field(default_factory=threading.Event, repr=False)
    thread: threading.Thread | None = field(default=None, repr=False)


class Supervisor:
    # The kind this runner serves, and its spec class: what a workload no longer listed is
    # stopped as. A runner of another kind (ssh.py's) subclasses this one and swaps the server.
    kind: str = KIND_NOTEBOOK
    spec_type: type[WorkloadSpec] = NotebookSpec
    noun: str = "notebook"  # what the log lines call one workload
    # Whether a running server's idle-culling facts (`_server_activity`) go to the portal
    # every activity_interval_s.
    reports_activity: bool = True

    def __init__(self, config: NotebookConfig, report: Report, *, pool: WarmPool | None = None,
                 activity_interval_s: float = 10.0,
                 on_fatal: Callable[[Exception], None] = lambda exc: None):
        self.config = config
        self.pool = pool
        self.activity_interval_s = activity_interval_s
        self._report_send = report
        self._on_fatal = on_fatal
        self._workloads: dict[str, Workload] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    # --- what the rest of the agent calls --------------------------------------------------------

    def adopt(self) -> list[str]:
        """Take over the instance servers an earlier agent run left running; clear the rest."""
        adopted = []
        for paths in slot.slots_list(self.config.workload_root):
            server = server_adopt(paths)
            if server is None:
                continue
            if server.instance_id is None:  # an unassigned pool server: the pool starts afresh
                server_stop(server)
                continue
            with self._lock:
                self._workloads[server.instance_id] = Workload(id=server.instance_id,
                                                               desired=None, server=server)
            adopted.append(server.instance_id)
            log.info("notebook %s: re-adopted its running server (pid %d, account %s)",
                     server.instance_id, server.pid, server.run_as.name)
        return adopted

    def desired_set(self, workloads: list) -> None:
        """A new full desired state; unlisted workloads are stopped. Returns at once."""
        specs = specs_parse(workloads)
        with self._lock:
            if self._stopping.is_set():
                return
            for workload_id, spec in specs.items():
                workload = self._workloads.get(workload_id)
                if workload is None:
                    workload = self._workloads[workload_id] = Workload(id=workload_id,
                                                                       desired=spec)
                elif workload.desired == spec:
                    continue
                workload.desired = spec
                self._kick(workload)
            for workload_id, workload in list(self._workloads.items()):
                if workload_id in specs:
                    continue
                if workload.desired is None or workload.desired.state not in (DESIRED_STOPPED,
                                                                              DESIRED_DELETED):
                    workload.desired = dataclasses.replace(
                        workload.desired or self.spec_type(workload_id, self.kind,
                                                           DESIRED_STOPPED),
                        state=DESIRED_STOPPED)
                    self._kick(workload)
                elif workload.thread is None and workload.server is None:
                    del self._workloads[workload_id]  # done with, and no longer listed

    def workload(self, workload_id: str) -> Workload | None:
        with self._lock:
            return self._workloads.get(workload_id)

    def workloads(self) -> list[Workload]:
        with self._lock:
            return list(self._workloads.values())

    def shutdown(self, *, stop_servers: bool = False) -> None:
        """Stop the threads. Instance servers keep running unless `stop_servers` (tests, tools)."""
        self._stopping.set()
        with self._lock:
            workloads = list(self._workloads.values())
        for workload in workloads:
            workload.wake.set()
        for workload in workloads:
            thread = workload.thread
            if thread is not None:
                thread.join(timeout=15)
        if stop_servers:
            for workload in workloads:
                if workload.server is not None:
                    self._server_stop(workload)

    # --- one workload's thread -----------------------------------------------------------------

    def _kick(self, workload: Workload) -> None:
        """Wake the workload's thread, starting one if it has none (call with the lock held)."""
        workload.wake.set()
        if workload.thread is None:
            workload.thread = threading.Thread(target=self._run, args=(workload,),
                                               name=f"workload-{workload.id[:8]}", daemon=True)
            workload.thread.start()

    def _run(self, workload: Workload) -> None:
        try:
            while not self._stopping.is_set():
                workload.wake.clear()
                self._converge(workload)
                with self._lock:
                    if self._quiet(workload) and not workload.wake.is_set():
                        workload.thread = None
                        return
                tick = min(_LIVENESS_S, self.activity_interval_s)
                if not workload.wake.wait(tick) and not self._stopping.is_set():
                    self._watch(workload)
        except Exception:  # a bug here must not kill the agent; the next change retries
            log.exception("notebook %s: supervisor thread failed", workload.id)
        with self._lock:
            workload.thread = None

    def _quiet(self, workload: Workload) -> bool:
        return workload.server is None and workload.unsent is None

    def _converge(self, workload: Workload) -> None:
        spec = workload.desired
        if spec is None:
            return
        if workload.unknown:
            if workload.server is not None:
                self._server_stop(workload)
            return
        if spec.wants_running:
            if workload.server is not None:
                if workload.reported != RUNNING:
                    self._report(workload, RUNNING)  # e.g. a server re-adopted after a restart
            elif workload.failed_spec != spec:
                self._start(workload, spec)
            return
        workload.failed_spec = None
        if workload.server is not None:
            self._server_stop(workload)
            self._report(workload, STOPPED)
        elif workload.reported not in (STOPPED, FAILED):
            self._report(workload, STOPPED)  # idempotent: unknown or already stopped
        if spec.state == DESIRED_DELETED:
            slot.work_dir_remove(self.config.workload_root, workload.id)

    def _start(self, workload: Workload, spec: WorkloadSpec) -> None:
        refusal = jupyter_args_refusal(list(spec.jupyter_args))
        if refusal:
            self._fail(workload, spec, f"The image's Jupyter options were refused: {refusal}")
            return
        server = self.pool.take(spec.jupyter_args) if self.pool is not None else None
        if server is not None:
            began = time.perf_counter()
            try:
                server_assign(server, workload.id, list(spec.gpus), self.config)
            except OSError as exc:
                server_stop(server)
                self.pool.refill()
                self._fail(workload, spec, f"cannot hand out a warm-pool server: {exc}")
                return
            workload.server = server
            log.info("notebook %s: handed out warm-pool server %s in %.1f ms", workload.id,
                     server.route_slot, (time.perf_counter() - began) * 1000)
            self._report(workload, RUNNING)
            self.pool.refill()
            return

        self._report(workload, STARTING)
        if workload.unknown or not self._wants_running(workload):
            return
        began = time.monotonic()
        try:
            server = server_start(self.config, route_slot=workload.id, instance_id=workload.id,
                                  gpus=list(spec.gpus), jupyter_args=list(spec.jupyter_args))
        except StartFailed as exc:
            self._fail(workload, spec, str(exc))
            return
        try:
            server_ready_wait(server, self.config.start_timeout_s,
                              lambda: self._stopping.is_set() or not self._wants_running(workload))
        except StartCancelled:
            server_stop(server)  # the next converge reports "stopped" if that is what is wanted
            return
        except StartFailed as exc:
            server_stop(server)
            self._fail(workload, spec, str(exc))
            return
        workload.server = server
        log.info("notebook %s: cold start ready in %.1f s as %s", workload.id,
                 time.monotonic() - began, server.run_as.name)
        self._report(workload, RUNNING)

    def _watch(self, workload: Workload) -> None:
        """Periodic: is the server still there; its activity; a report that did not get through."""
        server = workload.server
        if server is None:
            if workload.unsent is not None:
                self._send(workload, workload.unsent)
            return
        if not self._server_alive(server):
            reason = self._server_exit_reason(server, "unexpectedly")
            log.warning("%s %s: %s", self.noun, workload.id, reason.splitlines()[0])
            self._server_stop(workload)
            if workload.desired is not None and workload.desired.wants_running:
                workload.failed_spec = workload.desired
                self._report(workload, FAILED, reason=reason)
            return
        if self.reports_activity and time.monotonic() >= workload.next_activity:
            workload.next_activity = time.monotonic() + self.activity_interval_s
            self._report(workload, RUNNING, activity=self._server_activity(server))
        elif workload.unsent is not None:
            self._report(workload, RUNNING)

    def _wants_running(self, workload: Workload) -> bool:
        return (not workload.unknown and workload.desired is not None
                and workload.desired.wants_running)

    def _fail(self, workload: Workload, spec: WorkloadSpec, reason: str) -> None:
        log.warning("%s %s: start failed: %s", self.noun, workload.id, reason)
        workload.failed_spec = spec
        self._report(workload, FAILED, reason=reason)

    def _server_stop(self, workload: Workload) -> None:
        server, workload.server = workload.server, None
        if server is not None:
            self._server_halt(server)
            log.info("%s %s: server stopped", self.noun, workload.id)

    # --- what a server of this kind is: a runner of another kind overrides these ------------------

    def _server_alive(self, server) -> bool:
        return server_alive(server)

    def _server_exit_reason(self, server, when: str) -> str:
        return server_exit_reason(server, when)

    def _server_activity(self, server) -> dict | None:
        """Idle-culling facts for the periodic running report; None when they cannot be read."""
        return server_activity(server)

    def _server_halt(self, server) -> None:
        server_stop(server)

    # --- reports --------------------------------------------------------------------------------

    def _report(self, workload: Workload, state: str, *, reason: str | None = None,
                activity: dict | None = None) -> None:
        body = self._report_body(workload, state, reason, activity)
        if not report_transition_allowed(workload.reported, state):
            # Our own bug, not the portal's: say so; the portal still gets the truth.
            log.error("%s %s: reporting %s after %s, which the protocol does not expect",
                      self.noun, workload.id, state, workload.reported)
        workload.reported = state
        self._send(workload, body)

    def _report_body(self, workload: Workload, state: str, reason: str | None,
                     activity: dict | None) -> dict:
        server = workload.server if state == RUNNING else None
        return report_body(
            state,
            reason=reason,
            route_slot=server.route_slot if server else (workload.id if state == STARTING else None),
            socket=server.socket if server else None,
            pooled=bool(server and server.pooled),
            started_at=server.started_at if server else None,
            activity=activity,
        )

    def _send(self, workload: Workload, body: dict) -> None:
        workload.unsent = None
        try:
            outcome = self._report_send(workload.id, body)
        except (PortalUnavailable, AgentStopping) as exc:
            log.warning("notebook %s: %s report not delivered (%s); repeated at the next tick",
                        workload.id, body["state"], exc or "stopping")
            workload.unsent = body
            return
        except CredentialRejected as exc:
            self._on_fatal(exc)
            return
        except PortalRejected as exc:  # our bug, not the network: say so, do not repeat
            log.error("notebook %s: %s", workload.id, exc)
            return
        if outcome == STATUS_UNKNOWN and not workload.unknown:
            log.warning("notebook %s: the portal does not know this instance; stopping it",
                        workload.id)
            workload.unknown = True
            workload.wake.set()
