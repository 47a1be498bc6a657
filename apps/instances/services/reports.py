"""What node agents report about the workloads they run, applied to the instance lifecycle.

The reported states are the shared protocol's (provisioning/protocol.py). A report changes the
lifecycle only through `instance_transition`, and the idle flag only through services.idle; a
report that leaves the node's desired state as it was (provisioning -> running) changes no
desired-state version, so it does not wake the reporting agent's own long-poll."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from apps.capacity.models import Node
from apps.capacity.services.health import node_health_apply
from apps.capacity.services.wipe import node_wipe_done
from apps.catalog.models import OfferingKind
from provisioning.protocol import FAILED, RUNNING, STARTING, STOPPED

from ..models import Instance, InstanceRuntime, InstanceState
from .idle import instance_idle_clear
from .lifecycle import instance_transition
from .placement import instance_capacity_release, instance_node_wipe_mark, queue_place_on_commit

S = InstanceState
# Kinds reached over SSH: a running report carries an endpoint, not a route.
SSH_KINDS = (OfferingKind.GPU_SLICE, OfferingKind.BARE_METAL)


def handover_failed_message(reason: str) -> str:
    """What the owner of a bare-metal launch reads when its node failed the hand-over check."""
    if len(reason) > 250:  # the whole message fits the event's 500 characters, its advice too
        reason = reason[:249] + "…"
    return (
        f"The node failed its health check before hand-over ({reason}); it was taken out of service and you "
        "were not given it. Nothing is billed; launch again to get another node."
    )


class UnknownWorkload(Exception):
    """The agent reports an instance this node does not (or no longer) hold: it should stop it."""


class StaleWorkloadReport(Exception):
    pass


class InvalidWorkloadReport(Exception):
    """A running report that does not fit the instance's kind: an SSH workload (gpu_slice) is
    reached at an endpoint, a notebook through the front proxy's route."""


def _launch_requested_at(instance: Instance) -> datetime:
    event = instance.events.filter(to_state=S.REQUESTED).order_by("-created_at").first()
    return event.created_at if event else instance.created_at


@transaction.atomic
def workload_report_apply(
    *,
    node: Node,
    instance_id: UUID,
    seq: int,
    state: str,
    reason: str | None = None,
    route_slot: str | None = None,
    socket: str | None = None,
    pooled: bool = False,
    started_at: datetime | None = None,
    activity: dict | None = None,
    host: str | None = None,
    port: int | None = None,
    user: str | None = None,
    host_key: str | None = None,
    health_check: dict | None = None,
    wiped: dict | None = None,
) -> Instance:
    # NO KEY UPDATE, as instance_transition locks it: see the lock order in portal/db.py.
    instance = Instance.objects.select_for_update(no_key=True).filter(pk=instance_id, node=node).first()
    if instance is None:
        raise UnknownWorkload(f"Node {node.hostname} holds no instance {instance_id}.")
    runtime, _ = InstanceRuntime.objects.get_or_create(instance=instance)
    if seq <= runtime.last_seq:
        raise StaleWorkloadReport("A newer report for this workload was already accepted.")
    if state == RUNNING:
        _running_report_check(instance=instance, route_slot=route_slot, host=host)
    now = timezone.now()
    runtime.last_seq = seq
    runtime.process_state = state
    runtime.updated_at = now
    if activity:
        runtime.last_activity_at = activity.get("last_activity") or runtime.last_activity_at
        runtime.kernels = activity.get("kernels") or 0
        runtime.busy_kernels = activity.get("busy_kernels") or 0
    if state == RUNNING and instance.state in (S.SCHEDULED, S.PROVISIONING):
        runtime.route_slot, runtime.socket = route_slot, socket or ""
        runtime.pooled, runtime.started_at, runtime.stopped_at = pooled, started_at or now, None
        runtime.ssh_host, runtime.ssh_port, runtime.ssh_user, runtime.ssh_host_key = host, port, user, host_key
    if state in (STOPPED, FAILED):
        # Without a route the front proxy answers 404: the notebook URL is gone with the server.
        runtime.route_slot, runtime.socket = None, ""
        # The endpoint is gone with its sshd: the port may serve another instance next.
        runtime.ssh_host = runtime.ssh_port = runtime.ssh_user = runtime.ssh_host_key = None
        runtime.stopped_at = runtime.stopped_at or now
    runtime.save()
    if health_check is not None and instance.offering.kind == OfferingKind.BARE_METAL and state == FAILED:
        _handover_check_failed(instance=instance, node=node, result=health_check)
    else:
        _lifecycle_follow(instance=instance, runtime=runtime, state=state, reason=reason)
    if wiped is not None and instance.offering.kind == OfferingKind.BARE_METAL:
        # After the release above set the mark: a stop's report both ends the tenancy and says the
        # tenant's data is gone, so the node is placeable again once this commits, never before.
        if node_wipe_done(node_id=node.pk, instance_id=instance.pk, account=wiped["account"], files=wiped["files"]):
            queue_place_on_commit()  # the node is offered again: a queued launch may fit now
    instance.refresh_from_db()
    return instance


def _running_report_check(*, instance: Instance, route_slot: str | None, host: str | None) -> None:
    # The serializer checked each shape; only the instance knows which one it must be.
    ssh = instance.offering.kind in SSH_KINDS
    if ssh and not host:
        raise InvalidWorkloadReport("A running SSH workload's report needs host, port, user and host_key.")
    if not ssh and (host or not route_slot):
        raise InvalidWorkloadReport("A running notebook's report needs route_slot and socket, and no SSH endpoint.")


def _lifecycle_follow(*, instance: Instance, runtime: InstanceRuntime, state: str, reason: str | None) -> None:
    where = f"{instance.node.hostname}" if instance.node_id else "its node"
    ssh = instance.offering.kind in SSH_KINDS
    server = "the SSH server" if ssh else "Jupyter"
    if state == STARTING and instance.state == S.SCHEDULED:
        instance_transition(
            instance_id=instance.pk,
            to_state=S.PROVISIONING,
            expected_from=[S.SCHEDULED],
            message=f"Starting {server} on {where}",
            source="agent",
        )
    elif state == RUNNING and instance.state in (S.SCHEDULED, S.PROVISIONING):
        seconds = (runtime.started_at - _launch_requested_at(instance)).total_seconds()
        how = "from the warm pool" if runtime.pooled else "cold start"
        instance_transition(
            instance_id=instance.pk,
            to_state=S.RUNNING,
            expected_from=[S.SCHEDULED, S.PROVISIONING],
            message=f"Ready in {max(seconds, 0):.1f} s ({how})",
            source="agent",
        )
    elif state == STOPPED and instance.state == S.STOPPING:
        instance_transition(
            instance_id=instance.pk,
            to_state=S.STOPPED,
            expected_from=[S.STOPPING],
            message="Stopped; capacity released",
            source="agent",
        )
        _release(instance=instance)
    elif state in (STOPPED, FAILED) and instance.state in (S.SCHEDULED, S.PROVISIONING, S.RUNNING):
        unexpected = "The SSH server stopped unexpectedly." if ssh else "The notebook server stopped unexpectedly."
        message = reason or unexpected
        instance_transition(
            instance_id=instance.pk,
            to_state=S.FAILED,
            expected_from=[S.SCHEDULED, S.PROVISIONING, S.RUNNING],
            message=f"Failed: {message}",
            source="agent",
        )
        _release(instance=instance)
    elif state == FAILED and instance.state == S.STOPPING:
        instance_transition(
            instance_id=instance.pk,
            to_state=S.STOPPED,
            expected_from=[S.STOPPING],
            message="Stopped; capacity released",
            source="agent",
        )
        _release(instance=instance)
    elif state == RUNNING and instance.idle_warned_at and runtime.busy_kernels:
        instance_idle_clear(instance_id=instance.pk, message="Busy again: idle stop cancelled", source="agent")


def _release(*, instance: Instance) -> None:
    """Give the capacity of an instance whose workload ran back; a bare-metal node first waits for
    its tenant's wipe (marked in this same transaction, before the allocation is released)."""
    instance_node_wipe_mark(instance=instance)
    instance_capacity_release(instance=instance)


def _handover_check_failed(*, instance: Instance, node: Node, result: dict) -> None:
    """The agent's health check right before a bare-metal hand-over failed: the node is cordoned
    with the reason (as a failed periodic check would be), the instance fails with a message for
    its owner, and its capacity goes back. Nothing was handed over (the check runs before the
    account exists) and it never ran, so nothing is metered and there is nothing to wipe."""
    reasons = result.get("reasons") or ["no reason given"]
    more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
    moved = instance_transition(
        instance_id=instance.pk,
        to_state=S.FAILED,
        expected_from=[S.SCHEDULED, S.PROVISIONING],
        message=handover_failed_message(f"{reasons[0]}{more}"),
        source="agent",
    )
    # After the instance's own rows, before its allocation (portal/db.py): the node, cordoned even
    # if the instance had moved on meanwhile, since the check failed all the same.
    node_health_apply(node=node, result=result)
    if moved is not None:
        instance_capacity_release(instance=instance)
