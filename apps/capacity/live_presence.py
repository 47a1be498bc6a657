"""Telemetry pushes only to pages someone has open.

Every node reports every interval, so announcing each report to its node page's group cost a
channel-layer `group_send` (two Redis round trips, and the sends) per report, nearly always to a
group nobody had joined. After a batch of reports is stored, this asks Redis once, pipelined, which
of the batch's groups have members, and announces only to those (and to the operators' inventory
page, throttled as before, when it is open).

Presence is read from the Redis channel layer's own group sets (channels_redis keeps each group as
a sorted set of its channels, `<prefix>:group:<name>`): a page that joined a moment ago is there.
With another channel layer (none is configured here) every group is announced, as before.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable

from channels.layers import get_channel_layer

from portal.live import REFRESH_EVENT

from .live import INVENTORY_GROUP, TELEMETRY_PUSH_MIN_INTERVAL_S, node_group

logger = logging.getLogger(__name__)

_last_inventory_push = 0.0


async def groups_with_members(layer, groups: list[str]) -> list[str]:
    """The groups that have at least one channel: one pipelined ZCARD per Redis host."""
    group_key = getattr(layer, "_group_key", None)
    if group_key is None or not hasattr(layer, "consistent_hash"):
        return groups
    by_host: dict[int, list[str]] = defaultdict(list)
    for group in groups:
        by_host[layer.consistent_hash(group)].append(group)
    present = []
    for index, host_groups in by_host.items():
        async with layer.connection(index).pipeline(transaction=False) as pipe:
            for group in host_groups:
                pipe.zcard(group_key(group))
            counts = await pipe.execute()
        present += [group for group, count in zip(host_groups, counts, strict=True) if count]
    return present


async def telemetry_announce(*, node_ids: Iterable) -> int:
    """After a batch is stored: tell the open node pages of these nodes, and the inventory page
    (at most every TELEMETRY_PUSH_MIN_INTERVAL_S per process), to re-render. Returns how many
    groups were told. A Redis hiccup never fails the caller: the data is stored, a page catches up
    on its next push or reload."""
    global _last_inventory_push
    groups = [node_group(node_id) for node_id in node_ids]
    now = time.monotonic()
    if groups and now - _last_inventory_push >= TELEMETRY_PUSH_MIN_INTERVAL_S:
        _last_inventory_push = now
        groups.append(INVENTORY_GROUP)
    if not groups:
        return 0
    try:
        layer = get_channel_layer()
        present = await groups_with_members(layer, groups)
        for group in present:
            await layer.group_send(group, {"type": REFRESH_EVENT})
    except Exception:  # noqa: BLE001 - the reports are stored; the pages catch up
        logger.warning("telemetry announcement failed", exc_info=True)
        return 0
    return len(present)
