"""Channels groups that instance changes are announced to."""

from __future__ import annotations

from portal.live import live_notify_on_commit


def instance_group(instance_id) -> str:
    return f"instance-{instance_id}"


def organization_instances_group(organization_id) -> str:
    return f"org-{organization_id}-instances"


def node_desired_group(node_id) -> str:
    """The node agent's long-poll listens here for changes of its desired workloads."""
    return f"node-{node_id}-desired"


def instance_changed_on_commit(*, instance_id, organization_id, node_id=None) -> None:
    live_notify_on_commit(group=instance_group(instance_id))
    live_notify_on_commit(group=organization_instances_group(organization_id))
    if node_id is not None:
        live_notify_on_commit(group=node_desired_group(node_id))
