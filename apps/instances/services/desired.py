"""The desired state of a node's workloads: which instance states put a workload on a node's
list, and the version the node's agent long-polls with.

The version changes exactly when a node's list changes, and only then is the long-poll woken:
`desired_follow_transition` is an in-transaction subscriber of every instance transition
(registered in InstancesConfig.ready), and a transition that leaves the workload's desired state
as it was (an agent's own report moving an instance from provisioning to running, say) changes
nothing, so the agent's report is never echoed back to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from portal.live import live_notify_on_commit
from provisioning.protocol import DESIRED_DELETED, DESIRED_RUNNING, DESIRED_STOPPED

from ..models import Instance, InstanceState, NodeWorkloadsChange

if TYPE_CHECKING:
    from ..hooks import InstanceTransition

S = InstanceState

# What an agent is asked to do with an instance's workload in each lifecycle state. REQUESTED is
# on no node's list: it is not placed (again) yet.
DESIRED_BY_STATE: dict[str, str] = {
    S.SCHEDULED: DESIRED_RUNNING,
    S.PROVISIONING: DESIRED_RUNNING,
    S.RUNNING: DESIRED_RUNNING,
    S.STOPPING: DESIRED_STOPPED,
    S.STOPPED: DESIRED_STOPPED,
    S.FAILED: DESIRED_STOPPED,
    S.LOST: DESIRED_STOPPED,
    S.TERMINATED: DESIRED_DELETED,
}


def node_workloads_group(node_id) -> str:
    """The Channels group a node's long-poll waits on; told only when its version changed."""
    return f"node-{node_id}-workloads"


def node_workloads_change_record(*, node_id: UUID) -> None:
    """Record, in the caller's transaction, that `node_id`'s desired workloads changed: its
    version goes up when the transaction commits (a deferred trigger, migration 0003) and its
    agent's long-poll is woken after that. Rolled back with the transaction, it never happened."""
    NodeWorkloadsChange.objects.create(node_id=node_id)
    live_notify_on_commit(group=node_workloads_group(node_id))


def desired_follow_transition(*, instance: Instance, transition: InstanceTransition) -> None:
    """In-transaction subscriber (apps.instances.hooks): a transition that changes what the
    instance's node should do with it changes that node's version. The instance's node is the
    one whose list changed: placement sets it as the instance leaves REQUESTED, and a start
    again (to REQUESTED) takes the instance off the list of the node it last ran on."""
    if instance.node_id is None:
        return
    before = DESIRED_BY_STATE.get(transition.from_state) if transition.from_state else None
    if before != DESIRED_BY_STATE.get(transition.to_state):
        node_workloads_change_record(node_id=instance.node_id)
