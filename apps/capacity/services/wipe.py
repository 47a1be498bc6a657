"""Bare metal: a node is not placed again until its last tenant's data is wiped.

The instance that ends (its allocation released) marks its node `wipe_pending_instance` in the
transaction that releases the allocation (`node_wipe_pending_set`, called before the release so
the node row is locked before the allocation and GPU rows, as an inventory report locks node then
GPUs); both placement functions (capacity_place v2, capacity_place_gang v2) skip such a node. The
agent wipes the per-instance account, its home and its processes, and says so in its report;
`node_wipe_done` clears the mark and writes the wipe as a NodeEvent (the node's state unchanged:
from and to are its current state), the one record an operator reads it from.
"""

from __future__ import annotations

from uuid import UUID

from django.db import transaction
from django.utils import timezone

from ..live import inventory_changed_on_commit
from ..models import Node, NodeEvent


@transaction.atomic
def node_wipe_pending_set(*, node_id: UUID, instance_id: UUID) -> None:
    """The node holds `instance_id`'s tenant data until its agent reports the wipe."""
    Node.objects.filter(pk=node_id).update(wipe_pending_instance=instance_id, wipe_pending_since=timezone.now())
    inventory_changed_on_commit(node_id=node_id)


def node_wipe_reason(*, instance_id: UUID, account: str | None, files: int) -> str:
    what = f"account {account}, home" if account else "no account left, home"
    return f"Tenant data of instance {instance_id} wiped: {what}, {files} file{'s' if files != 1 else ''} removed"


@transaction.atomic
def node_wipe_done(*, node_id: UUID, instance_id: UUID, account: str | None, files: int) -> bool:
    """The agent wiped `instance_id`'s data: clear the node's mark if it is that instance's and log
    the wipe. Returns whether it was pending (a repeated report changes nothing and logs nothing)."""
    node = Node.objects.select_for_update(no_key=True).filter(pk=node_id, wipe_pending_instance=instance_id).first()
    if node is None:
        return False
    Node.objects.filter(pk=node.pk).update(wipe_pending_instance=None, wipe_pending_since=None)
    NodeEvent.objects.create(
        node=node,
        from_state=node.state,
        to_state=node.state,
        reason=node_wipe_reason(instance_id=instance_id, account=account, files=files)[:200],
    )
    inventory_changed_on_commit(node_id=node.pk)
    return True
