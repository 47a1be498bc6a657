"""Workloads wired into the agent's run: options from the command line, start and shutdown.

`loop.py` calls `start` once the node is registered (never with --once) and `shutdown` when the
agent stops. The desired state comes from the long-poll thread (`watch.py`) only; `desired_set`
hands each kind's part of it to that kind's runner (`RUNNER_KINDS`; notebooks: `Supervisor`,
SSH instances: `ssh_supervisor.SshSupervisor`, which listens on the node's --address and --ssh-ports).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from provisioning.protocol import KIND_BARE_METAL, KIND_GPU_SLICE, KIND_NOTEBOOK

from ..client import PortalClient
from ..health import HealthResult
from .bare_metal import BareMetalSupervisor
from .identity import (
    DEFAULT_PROXY_GROUP,
    account_remove,
    accounts_of_root,
    isolation_available,
    proxy_group_ensure,
)
from .notebook import DEFAULT_START_TIMEOUT_S, NotebookConfig
from .pool import WarmPool
from .slot import sockets_dir, workload_root_prepare
from .spec import DesiredState, spec_parse
from .ssh import SshConfig, ssh_available
from .ssh_supervisor import SshSupervisor
from .supervisor import Supervisor
from .watch import DEFAULT_WAIT_S, watch_start

log = logging.getLogger("neocloud.agent")

# The kinds this agent runs, each by one runner (an object with `desired_set(list)`): adding a
# kind adds its runner here.
RUNNER_KINDS: tuple[str, ...] = (KIND_NOTEBOOK, KIND_GPU_SLICE, KIND_BARE_METAL)


@dataclass
class WorkloadOptions:
    workload_root: Path
    proxy_group: str = DEFAULT_PROXY_GROUP
    pool_size: int = 0
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S
    poll_wait_s: float = DEFAULT_WAIT_S
    address: str | None = None  # --address: where SSH instances listen and are reached
    ssh_ports: tuple[int, int] | None = None  # --ssh-ports: the ports they may take


@dataclass
class WorkloadService:
    options: WorkloadOptions
    desired: DesiredState = field(default_factory=DesiredState)
    proxy_gid: int | None = None
    prepared: bool = False
    supervisor: Supervisor | None = None
    pool: WarmPool | None = None
    ssh: SshSupervisor | None = None
    bare_metal: BareMetalSupervisor | None = None

    def prepare(self) -> None:
        """Check the options and create the workload root; ValueError says what is wrong."""
        try:
            self.proxy_gid = proxy_group_ensure(self.options.proxy_group)
        except OSError as exc:
            raise ValueError(f"--proxy-group {self.options.proxy_group!r}: {exc}") from exc
        workload_root_prepare(self.options.workload_root)
        self.prepared = True

    def start(self, client: PortalClient, seq_take: Callable[[], int], stop: threading.Event,
              activity_interval_s: float, on_fatal: Callable[[Exception], None], *,
              health_check: Callable[[], HealthResult] | None = None) -> None:
        """`health_check`: the node health check (the agent's Sources), run before every
        bare-metal hand-over."""
        if not self.prepared:
            self.prepare()
        config = NotebookConfig(workload_root=self.options.workload_root, proxy_gid=self.proxy_gid,
                                start_timeout_s=self.options.start_timeout_s)

        def report(instance_id: str, body: dict) -> str:
            return client.workload_status(instance_id, {"seq": seq_take(), **body})

        self.pool = WarmPool(self.options.pool_size, config)
        self.supervisor = Supervisor(config, report, pool=self.pool,
                                     activity_interval_s=activity_interval_s, on_fatal=on_fatal)
        # SSH instances always have a runner: without --address/--ssh-ports (or sshd) each start
        # fails with the reason, which the portal shows, rather than waiting unanswered.
        self.ssh = SshSupervisor(SshConfig(workload_root=self.options.workload_root,
                                           address=self.options.address,
                                           ssh_ports=self.options.ssh_ports),
                                 report, activity_interval_s=activity_interval_s,
                                 on_fatal=on_fatal)
        # Whole nodes over SSH: the same sshd, every GPU, a health check before each hand-over.
        self.bare_metal = BareMetalSupervisor(
            SshConfig(workload_root=self.options.workload_root, address=self.options.address,
                      ssh_ports=self.options.ssh_ports),
            report, health_check=health_check, activity_interval_s=activity_interval_s,
            on_fatal=on_fatal)
        adopted = self.supervisor.adopt() + self.ssh.adopt() + self.bare_metal.adopt()
        self._accounts_orphaned_remove()
        self.pool.start()
        watch_start(client, self.desired, self.desired_set, stop, on_fatal,
                    wait_s=self.options.poll_wait_s)
        log.info("notebooks: workload root %s, %s, warm pool %d, %d re-adopted",
                 self.options.workload_root,
                 "an account of its own per server" if isolation_available() else
                 "NOT ISOLATED: the agent is not root, so every notebook runs as the agent's user",
                 self.options.pool_size, len(adopted))
        log.info("SSH instances: %s", ssh_available() or (
            f"on {self.options.address} ports {self.options.ssh_ports[0]}-"
            f"{self.options.ssh_ports[1]}" if self.options.address and self.options.ssh_ports
            else "none (no --address and --ssh-ports)"))

    def _accounts_orphaned_remove(self) -> None:
        """Accounts an earlier run of this agent created but never recorded (it died in
        between): no server of theirs was adopted, so nothing of theirs may keep running."""
        live = {workload.server.run_as.name for runner in self.runners().values()
                for workload in runner.workloads() if workload.server is not None}
        for account in accounts_of_root(self.options.workload_root):
            if account.name not in live:
                log.warning("removing account %s left by an earlier agent run", account.name)
                account_remove(account)

    def runners(self) -> dict:
        runners = {KIND_NOTEBOOK: self.supervisor, KIND_GPU_SLICE: self.ssh,
                   KIND_BARE_METAL: self.bare_metal}
        return {kind: runner for kind, runner in runners.items() if runner is not None}

    def desired_set(self, workloads: list) -> None:
        """A new full desired state: each runner gets its kind's part (an empty list stops all
        of its workloads); a kind no runner takes is logged by the spec parser and ignored."""
        runners = self.runners()
        for item in workloads:
            if not (isinstance(item, dict) and item.get("kind") in runners):
                spec_parse(item)  # logs why nothing will run it
        for kind, runner in runners.items():
            runner.desired_set([w for w in workloads if isinstance(w, dict) and w.get("kind") == kind])

    def shutdown(self, *, stop_servers: bool = False) -> None:
        """Pool servers are stopped; instance servers keep running for the next agent run."""
        for runner in self.runners().values():
            runner.shutdown(stop_servers=stop_servers)
        if self.pool is not None:
            self.pool.shutdown()
        if stop_servers:  # nothing of ours listens any more: the socket folder can go
            try:
                sockets_dir(self.options.workload_root).rmdir()
            except OSError:
                pass
