"""The runner of SSH instances (protocol KIND_GPU_SLICE): the notebook supervisor with an sshd
(ssh.py) as its server. The workload lifecycle (one thread per workload, ordered reports, stop on
a 404, no retry of a failed spec, re-adoption after an agent restart) is the supervisor's,
documented in supervisor.py."""

from __future__ import annotations

import logging
import time

from provisioning.protocol import (
    FAILED,
    KIND_GPU_SLICE,
    RUNNING,
    STARTING,
    GpuSliceSpec,
    WorkloadSpec,
    report_body,
)

from .ssh import (
    SshConfig,
    StartCancelled,
    StartFailed,
    ssh_adopt,
    ssh_alive,
    ssh_exit_reason,
    ssh_ready_wait,
    ssh_slots_list,
    ssh_start,
    ssh_stop,
)
from .supervisor import Supervisor, Workload

log = logging.getLogger("neocloud.agent")



class SshSupervisor(Supervisor):
    """Converges this node's SSH instances; the workload lifecycle (threads, reports, stop on
    404, no retry of a failed spec) is the notebook supervisor's, documented there."""

    kind = KIND_GPU_SLICE
    spec_type = GpuSliceSpec

    def __init__(self, config: SshConfig, report, **kwargs):
        super().__init__(config, report, pool=None, **kwargs)

    def adopt(self) -> list[str]:
        adopted = []
        for directory in ssh_slots_list(self.config.workload_root):
            server = ssh_adopt(self.config, directory)
            if server is None:
                continue
            with self._lock:
                self._workloads[server.instance_id] = Workload(id=server.instance_id,
                                                               desired=None, server=server)
            adopted.append(server.instance_id)
            log.info("ssh %s: re-adopted its sshd (pid %d, port %d, account %s)",
                     server.instance_id, server.pid, server.port, server.run_as.name)
        return adopted

    def _start(self, workload: Workload, spec: WorkloadSpec) -> None:
        self._report(workload, STARTING)
        if workload.unknown or not self._wants_running(workload):
            return
        began = time.monotonic()
        try:
            server = ssh_start(self.config, instance_id=workload.id, gpus=list(spec.gpus),
                               authorized_keys=list(spec.authorized_keys))
        except StartFailed as exc:
            self._fail(workload, spec, str(exc))
            return
        try:
            ssh_ready_wait(server, self.config.start_timeout_s,
                           lambda: self._stopping.is_set() or not self._wants_running(workload))
        except StartCancelled:
            ssh_stop(server)
            return
        except StartFailed as exc:
            ssh_stop(server)
            self._fail(workload, spec, str(exc))
            return
        workload.server = server
        log.info("ssh %s: sshd ready in %.1f s on %s:%d as %s", workload.id,
                 time.monotonic() - began, server.host, server.port, server.run_as.name)
        self._report(workload, RUNNING)

    def _watch(self, workload: Workload) -> None:
        server = workload.server
        if server is None:
            if workload.unsent is not None:
                self._send(workload, workload.unsent)
            return
        if not ssh_alive(server):
            reason = ssh_exit_reason(server, "unexpectedly")
            log.warning("ssh %s: %s", workload.id, reason.splitlines()[0])
            self._server_stop(workload)
            if workload.desired is not None and workload.desired.wants_running:
                workload.failed_spec = workload.desired
                self._report(workload, FAILED, reason=reason)
            return
        if workload.unsent is not None:
            self._report(workload, RUNNING)

    def _fail(self, workload: Workload, spec: WorkloadSpec, reason: str) -> None:
        log.warning("ssh %s: start failed: %s", workload.id, reason)
        workload.failed_spec = spec
        self._report(workload, FAILED, reason=reason)

    def _server_stop(self, workload: Workload) -> None:
        server, workload.server = workload.server, None
        if server is not None:
            ssh_stop(server)
            log.info("ssh %s: sshd stopped", workload.id)

    def _report_body(self, workload: Workload, state: str, reason: str | None,
                     activity: dict | None) -> dict:
        server = workload.server if state == RUNNING else None
        return report_body(state, reason=reason,
                           started_at=server.started_at if server else None,
                           ssh_endpoint=server.endpoint if server else None)
