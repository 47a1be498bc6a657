"""Workloads wired into the agent's run: options from the command line, start and shutdown.

`loop.py` calls `start` once the node is registered (never with --once), hands it the desired
workloads of every heartbeat reply, and calls `shutdown` when the agent stops.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..client import PortalClient
from .identity import DEFAULT_WORKLOAD_USER, RunAs, run_as_resolve
from .notebook import DEFAULT_START_TIMEOUT_S, NotebookConfig
from .pool import WarmPool
from .slot import workload_root_prepare
from .spec import DesiredState
from .supervisor import Supervisor
from .watch import DEFAULT_WAIT_S, watch_start

log = logging.getLogger("neocloud.agent")


@dataclass
class WorkloadOptions:
    workload_root: Path
    workload_user: str = DEFAULT_WORKLOAD_USER
    host_address: str = "127.0.0.1"
    pool_size: int = 0
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S
    poll_wait_s: float = DEFAULT_WAIT_S


@dataclass
class WorkloadService:
    options: WorkloadOptions
    desired: DesiredState = field(default_factory=DesiredState)
    run_as: RunAs | None = None
    supervisor: Supervisor | None = None
    pool: WarmPool | None = None

    def prepare(self) -> None:
        """Check the options and create the workload root; ValueError says what is wrong."""
        self.run_as = run_as_resolve(self.options.workload_user)
        workload_root_prepare(self.options.workload_root, self.run_as)

    def start(self, client: PortalClient, seq_take: Callable[[], int], stop: threading.Event,
              activity_interval_s: float, on_fatal: Callable[[Exception], None]) -> None:
        if self.run_as is None:
            self.prepare()
        config = NotebookConfig(workload_root=self.options.workload_root, run_as=self.run_as,
                                host_address=self.options.host_address,
                                start_timeout_s=self.options.start_timeout_s)

        def report(instance_id: str, body: dict) -> str:
            return client.workload_status(instance_id, {"seq": seq_take(), **body})

        self.pool = WarmPool(self.options.pool_size, config)
        self.supervisor = Supervisor(config, report, pool=self.pool,
                                     activity_interval_s=activity_interval_s, on_fatal=on_fatal)
        adopted = self.supervisor.adopt()
        self.pool.start()
        watch_start(client, self.desired, self.supervisor.desired_set, stop, on_fatal,
                    wait_s=self.options.poll_wait_s)
        log.info("notebooks: workload root %s, running as %s, warm pool %d, %d re-adopted",
                 self.options.workload_root, self.run_as.name, self.options.pool_size,
                 len(adopted))

    def desired_from_heartbeat(self, workloads: list, version: int | None) -> None:
        changed = self.desired.from_heartbeat(workloads, version)
        if changed is not None and self.supervisor is not None:
            log.info("desired workloads (heartbeat): %d", len(changed))
            self.supervisor.desired_set(changed)

    def shutdown(self, *, stop_servers: bool = False) -> None:
        """Pool servers are stopped; instance servers keep running for the next agent run."""
        if self.supervisor is not None:
            self.supervisor.shutdown(stop_servers=stop_servers)
        if self.pool is not None:
            self.pool.shutdown()
