"""The desired state of this node's workloads as the agent takes it in.

It arrives on one channel only: the long-poll (`watch.py`), whose answers carry a `version` that
the portal changes exactly when the list changes. So the newest answer is always the current
state, and nothing needs ordering against another channel. The wire format and its checks are
the shared protocol's (`provisioning/protocol.py`); this module adds the agent's own check of
the id (it names a folder on this host) and logs what it cannot act on.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from provisioning.protocol import SpecRefused, WorkloadSpec, spec_from_wire

from .slot import name_is_safe

log = logging.getLogger("neocloud.agent")


def spec_parse(item: object) -> WorkloadSpec | None:
    """One workload of a desired-state list, or None (logged) when we cannot act on it."""
    try:
        spec = spec_from_wire(item)
    except SpecRefused as refused:
        workload_id = item.get("id") if isinstance(item, dict) else None
        if "is not one this agent runs" in str(refused):
            log.info("desired workload %s ignored: %s", workload_id, refused)
        else:
            log.warning("desired workload %s ignored: %s", workload_id, refused)
        return None
    if not name_is_safe(spec.id):
        log.warning("desired workload ignored: bad id %r", spec.id)
        return None
    return spec


def specs_parse(items: list) -> dict[str, WorkloadSpec]:
    specs = {}
    for item in items if isinstance(items, list) else []:
        spec = spec_parse(item)
        if spec is not None:
            specs[spec.id] = spec
    return specs


@dataclass
class DesiredState:
    """The last long-poll answer: its version (sent with the next poll) and its list."""

    version: int = 0
    current: list | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def from_poll(self, version: int, workloads: list) -> list | None:
        """Record a long-poll answer; returns the list when it differs from the last one (a
        portal restored from a backup may repeat a list under another version)."""
        with self._lock:
            self.version = version
            if workloads == self.current:
                return None
            self.current = workloads
            return workloads
