"""Channels groups of the capacity pages, and a throttle so telemetry cannot flood them."""

from __future__ import annotations

import time

from portal.live import live_notify, live_notify_on_commit

INVENTORY_GROUP = "ops-inventory"
# Telemetry arrives every few seconds from every node; operators need the page to move, not
# a re-render per report.
TELEMETRY_PUSH_MIN_INTERVAL_S = 2


def node_group(node_id) -> str:
    return f"ops-node-{node_id}"


def inventory_changed_on_commit(*, node_id=None) -> None:
    """A state or inventory change: announce it to the operators' pages after commit."""
    live_notify_on_commit(group=INVENTORY_GROUP)
    if node_id is not None:
        live_notify_on_commit(group=node_group(node_id))


# Per process, not shared through Redis: a shared throttle would cost two Redis round trips on
# every telemetry report, and N web processes pushing once per interval each is still bounded.
_last_push: dict[str, float] = {}


def telemetry_changed(*, node_id) -> None:
    """Announce new telemetry, at most once per interval per page and web process."""
    now = time.monotonic()
    for group in (INVENTORY_GROUP, node_group(node_id)):
        if now - _last_push.get(group, 0.0) >= TELEMETRY_PUSH_MIN_INTERVAL_S:
            _last_push[group] = now
            live_notify(group=group)
