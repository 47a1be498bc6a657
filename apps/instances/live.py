"""Channels groups that instance changes are announced to."""

from __future__ import annotations

from portal.live import live_notify_on_commit


def instance_group(instance_id) -> str:
    return f"instance-{instance_id}"


def organization_instances_group(organization_id) -> str:
    return f"org-{organization_id}-instances"


def instance_changed_on_commit(*, instance_id, organization_id) -> None:
    # The node's agent is told apart, only when its desired workloads change (services/desired.py).
    live_notify_on_commit(group=instance_group(instance_id))
    live_notify_on_commit(group=organization_instances_group(organization_id))
