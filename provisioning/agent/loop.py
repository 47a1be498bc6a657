"""The agent's run: register (or resume), then heartbeat and telemetry until told to stop.

With a `WorkloadService` (not with --once) it also runs notebook workloads: a long-poll thread
for the desired state and one thread per active workload (see `workloads/`)."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from provisioning.protocol import F_HEALTH_CHECK

from .client import (
    AgentState,
    AgentStopping,
    CredentialRejected,
    PortalClient,
    PortalRejected,
    PortalUnavailable,
    state_load,
    state_save,
)
from .health import HealthResult, node_health_check
from .host import host_facts_read
from .inventory import NodeInventory, NodeTelemetry, inventory_from_nvml, telemetry_from_nvml

if TYPE_CHECKING:
    from .workloads.service import WorkloadService

log = logging.getLogger("neocloud.agent")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3  # the portal refused our token or credential: a person must act

_INTERVAL_MIN_S, _INTERVAL_MAX_S = 1, 300


@dataclass
class Sources:
    """Where inventory and telemetry come from: real NVML, or a simulation."""

    inventory_read: Callable[[], NodeInventory]
    telemetry_read: Callable[[], NodeTelemetry]
    # The node health check (health.py) over a fresh raw read; None: this agent reports none.
    health_check: Callable[[], HealthResult] | None = None


def _node_facts(address: str | None, ssh_ports: tuple[int, int] | None) -> dict:
    """What the agent was told about the node's reach, added to the host facts it reads."""
    return {"address": address, "ssh_ports": list(ssh_ports) if ssh_ports else None}


def sources_real(hostname: str | None, disk_path: str, *, address: str | None = None,
                 ssh_ports: tuple[int, int] | None = None) -> Sources:
    from . import nvml

    facts = _node_facts(address, ssh_ports)
    return Sources(
        inventory_read=lambda: inventory_from_nvml(
            nvml.nvml_inventory_read(), {**host_facts_read(hostname, disk_path), **facts}
        ),
        telemetry_read=lambda: telemetry_from_nvml(nvml.nvml_telemetry_read()),
        health_check=lambda: node_health_check(nvml.nvml_inventory_read()),
    )


def sources_simulated(spec_text: str, hostname: str | None, disk_path: str, *,
                      address: str | None = None,
                      ssh_ports: tuple[int, int] | None = None) -> Sources:
    from . import simulate

    spec = simulate.simulation_spec_parse(spec_text)  # ValueError before anything starts
    host = {**host_facts_read(hostname, disk_path), **_node_facts(address, ssh_ports)}
    return Sources(
        inventory_read=lambda: inventory_from_nvml(
            simulate.simulated_inventory_raw(spec, host["hostname"]), host
        ),
        telemetry_read=lambda: telemetry_from_nvml(
            simulate.simulated_telemetry_raw(spec, host["hostname"])
        ),
        health_check=_simulated_health_check(spec, host["hostname"]),
    )


def _simulated_health_check(spec, hostname: str) -> Callable[[], HealthResult]:
    """The check over the simulated inventory; GPUs the spec breaks late (late_bad=) are bad
    from the second check on (threads share it: the periodic check and bare-metal hand-overs)."""
    from . import simulate

    checks = itertools.count()  # next() is atomic under the GIL
    broken = dataclasses.replace(spec, bad_gpus=tuple(sorted({*spec.bad_gpus, *spec.late_bad_gpus})))

    def check() -> HealthResult:
        current = spec if next(checks) == 0 or not spec.late_bad_gpus else broken
        return node_health_check(simulate.simulated_inventory_raw(current, hostname))

    return check


def seq_start() -> int:
    """Milliseconds since the epoch: a restarted agent's first seq beats the last run's."""
    return time.time_ns() // 1_000_000


@dataclass
class AgentRun:
    client: PortalClient
    sources: Sources
    state_path: Path
    token: str | None
    telemetry_interval_s: float
    stop: threading.Event
    next_seq: int = field(default_factory=seq_start)
    heartbeat_interval_s: float = 10
    inventory_accepted: dict | None = None  # the last payload the portal took
    # Telemetry rides on the heartbeat (one request per interval) until a portal's reply shows it
    # ignores it (an older portal): then it goes apart, as before.
    telemetry_in_heartbeat: bool = True
    health_interval_s: float = 600
    health_last: dict | None = None  # the last check's payload, sent with the inventory
    health_due: float = 0.0  # time.monotonic() when the next check runs
    workloads: WorkloadService | None = None  # notebooks; None: this agent runs none
    fatal: Exception | None = None  # set by a background thread that must end the run
    _seq_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def seq_take(self) -> int:
        # Heartbeats, telemetry and workload reports (other threads) share the counter.
        with self._seq_lock:
            seq, self.next_seq = self.next_seq, self.next_seq + 1
        return seq

    def fatal_set(self, exc: Exception) -> None:
        if self.fatal is None:
            self.fatal = exc
        self.stop.set()


def agent_run(run: AgentRun, *, once: bool = False) -> int:
    """Register or resume, then loop; returns the process exit code."""
    try:
        inventory = run.sources.inventory_read()
        while True:
            try:
                agent_register_or_resume(run, inventory)
                break
            except PortalUnavailable as exc:
                if once:
                    log.error("%s", exc)
                    return EXIT_ERROR
                log.warning("%s; trying again in %ds", exc, run.heartbeat_interval_s)
                if run.stop.wait(run.heartbeat_interval_s):
                    return EXIT_OK
        if once or run.workloads is None:
            return _loop(run, once=once)
        run.workloads.start(run.client, run.seq_take, run.stop, run.telemetry_interval_s,
                            run.fatal_set, health_check=run.sources.health_check)
        try:
            return _loop(run, once=False)
        finally:
            run.workloads.shutdown()
    except AgentStopping:
        if run.fatal is not None:
            return _fatal_exit(run)
        return EXIT_OK
    except CredentialRejected as exc:
        return _credential_rejected(run, exc)
    except _RegistrationError as exc:
        log.error("%s", exc)
        return EXIT_REJECTED


def _credential_rejected(run: AgentRun, exc: Exception) -> int:
    log.error("%s. This node's credential is not valid (any more): delete %s and start the "
              "agent again with a new --token to re-register.", exc, run.state_path)
    return EXIT_REJECTED


def _fatal_exit(run: AgentRun) -> int:
    if isinstance(run.fatal, CredentialRejected):
        return _credential_rejected(run, run.fatal)
    log.error("%s", run.fatal)
    return EXIT_ERROR


def agent_register_or_resume(run: AgentRun, inventory: NodeInventory) -> AgentState:
    state = state_load(run.state_path)
    if state is not None:
        if state.portal_url != run.client.portal_url or state.hostname != inventory.hostname:
            raise _RegistrationError(
                f"state file {run.state_path} belongs to {state.hostname} at {state.portal_url}, "
                f"not {inventory.hostname} at {run.client.portal_url}: use another --state-file"
            )
        run.client.authenticate(state.node_id, state.credential)
        log.info("resuming as node %s (%d GPUs%s)", state.node_id, len(inventory.gpus),
                 ", SIMULATED" if inventory.simulated else "")
        return state
    if not run.token:
        raise _RegistrationError(
            f"not registered yet ({run.state_path} does not exist): pass --token or set "
            "NEOCLOUD_AGENT_TOKEN to the one-time registration token from the portal"
        )
    payload = _with_health(run, inventory.to_payload())
    try:
        registration = run.client.register(run.token, payload)
    except PortalRejected as exc:
        raise _RegistrationError(f"{exc}. Registration tokens work once; ask the portal "
                                 "for a new one.") from exc
    state = AgentState(portal_url=run.client.portal_url, hostname=inventory.hostname,
                       node_id=registration.node_id, credential=registration.credential)
    state_save(run.state_path, state)
    run.client.authenticate(state.node_id, state.credential)
    run.inventory_accepted = payload
    run.heartbeat_interval_s = _interval_clamp(registration.heartbeat_interval_s)
    log.info("registered as node %s (%d GPUs%s); state in %s", state.node_id,
             len(inventory.gpus), ", SIMULATED" if inventory.simulated else "", run.state_path)
    return state


def agent_heartbeat(run: AgentRun, *, telemetry_due: bool = False) -> bool:
    """One heartbeat, carrying the inventory when it changed and, when `telemetry_due`, the
    telemetry. Returns whether the portal took the telemetry (else it is still to be sent)."""
    try:
        payload = _with_health(run, run.sources.inventory_read().to_payload())
    except Exception:  # a failed read must not stop the heartbeat that says we are alive
        log.exception("inventory read failed; heartbeat goes without inventory")
        payload = None
    telemetry = _telemetry_read(run) if telemetry_due and run.telemetry_in_heartbeat else None
    changed = payload is not None and payload != run.inventory_accepted
    reply = run.client.heartbeat(
        run.seq_take(), datetime.now(UTC).isoformat(timespec="milliseconds"),
        payload if changed else None, telemetry,
    )
    if changed:
        run.inventory_accepted = payload
        log.info("inventory sent (%d GPUs)", len(payload["gpus"]))
    interval = _interval_clamp(reply.heartbeat_interval_s)
    if interval != run.heartbeat_interval_s:
        log.info("heartbeat interval now %ss", interval)
        run.heartbeat_interval_s = interval
    if telemetry is not None and not reply.telemetry_taken:
        log.info("the portal does not take telemetry in heartbeats; sending it apart")
        run.telemetry_in_heartbeat = False
    return reply.telemetry_taken


def _with_health(run: AgentRun, payload: dict) -> dict:
    """The inventory payload with the last health check, re-run when due (at start, then every
    health_interval_s). The check's payload only changes when it re-runs, so an unchanged
    inventory still goes unsent between checks."""
    if run.sources.health_check is not None and time.monotonic() >= run.health_due:
        run.health_due = time.monotonic() + run.health_interval_s
        try:
            result = run.sources.health_check()
        except Exception:  # a broken check must not stop the heartbeat; the last result stands
            log.exception("health check could not run; keeping the last result")
        else:
            run.health_last = result.to_payload()
            log.log(logging.INFO if result.passed else logging.WARNING, "health check %s%s",
                    "passed" if result.passed else "FAILED: ", "; ".join(result.reasons))
    if run.health_last is not None:
        payload[F_HEALTH_CHECK] = run.health_last
    return payload


def _telemetry_read(run: AgentRun) -> dict | None:
    try:
        return run.sources.telemetry_read().to_payload()
    except Exception:
        log.exception("telemetry read failed; skipped this round")
        return None


def agent_telemetry_send(run: AgentRun) -> None:
    payload = _telemetry_read(run)
    if payload is not None:
        run.client.telemetry(run.seq_take(), payload)


# Telemetry due this soon rides on the heartbeat being sent now, so that equal intervals (the
# default) make one request per interval, not two a few milliseconds apart.
_TELEMETRY_CARRY_S = 1.0


def _loop(run: AgentRun, *, once: bool) -> int:
    next_heartbeat = next_telemetry = time.monotonic()
    while not run.stop.is_set():
        if next_heartbeat <= time.monotonic():
            due = next_telemetry <= time.monotonic() + _TELEMETRY_CARRY_S
            carried = [False]

            def beat(run: AgentRun, due=due, carried=carried) -> None:
                carried[0] = agent_heartbeat(run, telemetry_due=due)

            failed = _send(run, beat)
            next_heartbeat = time.monotonic() + run.heartbeat_interval_s
            if carried[0]:
                next_telemetry = time.monotonic() + run.telemetry_interval_s
            if failed and once:
                return EXIT_ERROR
        if next_telemetry <= time.monotonic():
            failed = _send(run, agent_telemetry_send)
            next_telemetry = time.monotonic() + run.telemetry_interval_s
            if failed and once:
                return EXIT_ERROR
        if once:
            return EXIT_OK
        run.stop.wait(max(0.0, min(next_heartbeat, next_telemetry) - time.monotonic()))
    if run.fatal is not None:
        return _fatal_exit(run)
    log.info("stopping")
    return EXIT_OK


def _send(run: AgentRun, send: Callable[[AgentRun], None]) -> bool:
    """Send one message; True when it failed. A rejected credential propagates (we must exit)."""
    try:
        send(run)
    except CredentialRejected:
        raise
    except PortalRejected as exc:
        # Our bug (a payload the portal refuses), not the network: say so, keep the node alive.
        log.error("%s", exc)
        return True
    except PortalUnavailable as exc:
        log.warning("%s; next try at the next interval", exc)
        return True
    return False


def _interval_clamp(seconds: float) -> float:
    return max(_INTERVAL_MIN_S, min(_INTERVAL_MAX_S, seconds))


class _RegistrationError(Exception):
    pass
