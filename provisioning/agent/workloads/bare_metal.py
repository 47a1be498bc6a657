"""The runner of bare-metal nodes (protocol KIND_BARE_METAL): the SSH runner (ssh_supervisor.py)
with every GPU of the node, plus the two things that make handing out a whole node safe:

- Health gate. Right before the hand-over (after "starting" is reported, before any account
  exists) it runs the node health check (provisioning/agent/health.py: NVML facts, and on real
  GPUs a verified CUDA matrix multiply). A failed check is reported as the start's failure with
  the check itself (F_HEALTH_CHECK): the portal cordons the node with the reason and tells the
  customer; nothing was created, so nothing of theirs is on the node.
- Wipe. Bare metal keeps nothing between tenants, nor between a stop and a start: when its sshd
  stops (a stop, a failure) the account, every process of it and its files in the shared temporary
  folders go (ssh.ssh_stop), and then its home, the instance's whole folder. Every "stopped" or
  "failed" report carries what was removed (F_WIPED), which is what lets the portal offer the node
  again (apps/capacity/services/wipe.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from provisioning.protocol import (
    F_HEALTH_CHECK,
    F_WIPED,
    FAILED,
    KIND_BARE_METAL,
    STARTING,
    STOPPED,
    BareMetalSpec,
    WorkloadSpec,
    wipe_check,
)

from ..health import HealthResult
from . import slot
from .ssh import SshServer, ssh_stop
from .ssh_supervisor import SshSupervisor
from .supervisor import Workload

log = logging.getLogger("neocloud.agent")


def bare_metal_wipe(root: Path, instance_id: str, account: str | None) -> dict:
    """Remove the instance's folder (its home, the working directory) and say what went: the
    account (already removed by ssh_stop, named here), the home, and how many files were in it."""
    home = slot.work_dir(root, instance_id)
    top = root / instance_id
    files = 0
    for _folder, folders, names in os.walk(top):
        files += len(names)
        files += sum(1 for name in folders if os.path.islink(os.path.join(_folder, name)))
    shutil.rmtree(top, ignore_errors=True)
    if top.exists():
        log.error("bare metal %s: %s could not be removed entirely", instance_id, top)
    return {"account": account, "home": str(home), "files": files}


class BareMetalSupervisor(SshSupervisor):
    """Converges this node's bare-metal workloads; the lifecycle is the SSH runner's."""

    kind = KIND_BARE_METAL
    spec_type = BareMetalSpec
    noun = "bare metal"

    def __init__(self, config, report, *, health_check: Callable[[], HealthResult] | None = None, **kwargs):
        super().__init__(config, report, **kwargs)
        self.health_check = health_check
        self._wiped: dict[str, dict] = {}  # instance id -> what its last stop removed, until reported
        self._checks: dict[str, dict] = {}  # instance id -> its failed hand-over check, until reported
        self._facts_lock = threading.Lock()

    def _start(self, workload: Workload, spec: WorkloadSpec) -> None:
        self._report(workload, STARTING)
        if workload.unknown or not self._wants_running(workload):
            return
        if self.health_check is None:
            self._fail(workload, spec, "this agent has no node health check, so it hands out no node")
            return
        try:
            result = self.health_check()
        except Exception as exc:  # a check that cannot run is no pass
            log.exception("bare metal %s: the hand-over health check could not run", workload.id)
            self._fail(workload, spec, f"the node health check could not run: {exc}")
            return
        if not result.passed:
            log.warning("bare metal %s: hand-over health check failed: %s", workload.id, "; ".join(result.reasons))
            with self._facts_lock:
                self._checks[workload.id] = result.to_payload()
            reasons = result.reasons or ["no reason given"]
            self._fail(workload, spec, f"the node failed its health check before hand-over: {reasons[0]}")
            return
        log.info("bare metal %s: hand-over health check passed (%s)", workload.id, result.cuda_note)
        if workload.unknown or not self._wants_running(workload):
            return
        self._sshd_start(workload, spec)

    def _server_halt(self, server: SshServer) -> None:
        account = server.run_as.name if server.run_as.switch else None
        ssh_stop(server)  # sshd, sessions, every process of the account, the account
        wiped = bare_metal_wipe(Path(server.workload_root), server.instance_id, account)
        log.info("bare metal %s: tenant data wiped (account %s, %d files)", server.instance_id, account, wiped["files"])
        with self._facts_lock:
            self._wiped[server.instance_id] = wiped

    def _report_body(self, workload: Workload, state: str, reason: str | None, activity: dict | None) -> dict:
        body = super()._report_body(workload, state, reason, activity)
        if state not in (STOPPED, FAILED):
            return body
        with self._facts_lock:
            check = self._checks.pop(workload.id, None) if state == FAILED else None
            wiped = self._wiped.pop(workload.id, None)
        if wiped is None:
            # No server of ours stopped (a start that failed, a stop before the start): whatever
            # the instance's folder holds goes now, so the report can say the node is clean.
            wiped = bare_metal_wipe(self.config.workload_root, workload.id, None)
        if check is not None:
            body[F_HEALTH_CHECK] = check
        body[F_WIPED] = wipe_check(wiped)
        return body
