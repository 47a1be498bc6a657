"""The desired state of this node's workloads: the wire format, and which snapshot is current.

Desired state arrives two ways, each a full snapshot of the node's workloads: the heartbeat
reply's `desired_workloads`, and the long-poll (`watch.py`), which carries a `version`. A
heartbeat reply can be older than the long-poll answer that overtook it, so acting on whichever
came last could stop a notebook that was just started. The rule:

- a long-poll answer always wins (the portal answered it at once because its version differed);
- a heartbeat snapshot that carries `workloads_version` wins when that version is not older
  than the last one seen;
- a heartbeat snapshot without a version is used only while the long-poll is not healthy (no
  answer for a while, or the portal does not have the endpoint): it is the fallback channel.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field

from .slot import name_is_safe

log = logging.getLogger("neocloud.agent")

KIND_NOTEBOOK = "notebook"
RUNNING, STOPPED, DELETED = "running", "stopped", "deleted"
_STATES = (RUNNING, STOPPED, DELETED)
# GPU-<uuid>, MIG-<uuid> or the older MIG-GPU-<uuid>/<gi>/<ci>: nothing that could split a list.
_DEVICE = re.compile(r"^(GPU|MIG)-[A-Za-z0-9._/-]+$")


@dataclass(frozen=True)
class WorkloadSpec:
    id: str
    kind: str
    state: str
    gpus: tuple[str, ...] = ()
    jupyter_args: tuple[str, ...] = ()

    @property
    def wants_running(self) -> bool:
        return self.state == RUNNING


def spec_parse(item: object) -> WorkloadSpec | None:
    """One workload of a desired-state list, or None (logged) when we cannot act on it."""
    if not isinstance(item, dict):
        log.warning("desired workload ignored: not an object: %r", item)
        return None
    workload_id, kind, state = item.get("id"), item.get("kind"), item.get("state")
    if not isinstance(workload_id, str) or not name_is_safe(workload_id):
        log.warning("desired workload ignored: bad id %r", workload_id)
        return None
    if kind != KIND_NOTEBOOK:
        log.info("desired workload %s ignored: kind %r is not one this agent runs",
                 workload_id, kind)
        return None
    if state not in _STATES:
        log.warning("desired workload %s ignored: unknown state %r", workload_id, state)
        return None
    gpus, args = item.get("gpus") or [], item.get("jupyter_args") or []
    if not (isinstance(gpus, list) and all(isinstance(g, str) and _DEVICE.match(g)
                                           for g in gpus)):
        log.warning("desired workload %s ignored: bad gpus %r", workload_id, gpus)
        return None
    if not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
        log.warning("desired workload %s ignored: bad jupyter_args %r", workload_id, args)
        return None
    return WorkloadSpec(id=workload_id, kind=kind, state=state, gpus=tuple(gpus),
                        jupyter_args=tuple(args))


def specs_parse(items: list) -> dict[str, WorkloadSpec]:
    specs = {}
    for item in items if isinstance(items, list) else []:
        spec = spec_parse(item)
        if spec is not None:
            specs[spec.id] = spec
    return specs


@dataclass
class DesiredState:
    """Picks the current snapshot from the two channels (see the module docstring)."""

    poll_healthy_s: float = 45.0  # a long-poll answer this recent makes heartbeats a fallback
    version: int = 0  # the last version seen; the long-poll sends it
    current: list | None = None
    _poll_answered_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def from_poll(self, version: int, workloads: list) -> list | None:
        """Record a long-poll answer; returns the snapshot when it changed what we want."""
        with self._lock:
            self._poll_answered_at = time.monotonic()
            self.version = version
            return self._take(workloads)

    def from_heartbeat(self, workloads: list, version: int | None) -> list | None:
        with self._lock:
            if version is not None:
                if version < self.version:
                    return None
                self.version = version
            elif self.poll_healthy():
                return None
            return self._take(workloads)

    def poll_healthy(self) -> bool:
        answered = self._poll_answered_at
        return answered is not None and time.monotonic() - answered < self.poll_healthy_s

    def _take(self, workloads: list) -> list | None:
        if workloads == self.current:
            return None
        self.current = workloads
        return workloads
