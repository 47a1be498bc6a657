"""The runner of SSH instances (protocol KIND_GPU_SLICE): the notebook supervisor with an sshd
(ssh.py) as its server. The workload lifecycle (one thread per workload, ordered reports, stop on
a 404, no retry of a failed spec, re-adoption after an agent restart) is the supervisor's,
documented in supervisor.py."""

from __future__ import annotations

import logging
import time

from provisioning.protocol import (
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
    ssh_slot_kind,
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
    noun = "ssh"
    reports_activity = False  # no idle culling for SSH instances: a session is not a kernel

    def __init__(self, config: SshConfig, report, **kwargs):
        super().__init__(config, report, pool=None, **kwargs)

    def adopt(self) -> list[str]:
        adopted = []
        for directory in ssh_slots_list(self.config.workload_root):
            if ssh_slot_kind(directory) != self.kind:  # another SSH runner's (bare metal's)
                continue
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
        self._sshd_start(workload, spec)

    def _sshd_start(self, workload: Workload, spec: WorkloadSpec) -> None:
        """Start the workload's sshd and report it running, or failed with why."""
        began = time.monotonic()
        try:
            server = ssh_start(self.config, instance_id=workload.id, gpus=list(spec.gpus),
                               authorized_keys=list(spec.authorized_keys), kind=self.kind)
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

    def _server_alive(self, server) -> bool:
        return ssh_alive(server)

    def _server_exit_reason(self, server, when: str) -> str:
        return ssh_exit_reason(server, when)

    def _server_halt(self, server) -> None:
        ssh_stop(server)

    def _report_body(self, workload: Workload, state: str, reason: str | None,
                     activity: dict | None) -> dict:
        server = workload.server if state == RUNNING else None
        return report_body(state, reason=reason,
                           started_at=server.started_at if server else None,
                           ssh_endpoint=server.endpoint if server else None)
