"""The reconciler: a periodic pass that finishes or fails anything left half-way within bounded
time (a worker killed mid-task, an agent that never answers, a notebook that never becomes
ready, a node that went down), and stops idle notebooks after warning their owners.

It imports nothing of provisioning: `instances_requeue_due` returns the instances whose
placement must be enqueued again, and the periodic task (provisioning/tasks.py) enqueues them.
Events and the idle flag are written only through the lifecycle and services.idle."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from apps.capacity.models import Gpu, NodeState

from ..models import Instance, InstanceState
from .idle import instance_idle_clear, instance_idle_warn
from .lifecycle import instance_note, instance_transition
from .placement import instance_capacity_release, instance_node_wipe_mark

S = InstanceState


def instances_requeue_due(*, now: datetime | None = None) -> list[UUID]:
    """Requested instances no worker placed (killed before or during the task), at most once per
    REQUEUE_AFTER_S each: notes the attempt in their log and returns their ids to enqueue."""
    now = now or timezone.now()
    cfg = settings.INSTANCES
    requeue_after = timedelta(seconds=cfg["REQUEUE_AFTER_S"])
    due = []
    for instance in Instance.objects.filter(
        state=S.REQUESTED,
        state_changed_at__lt=now - requeue_after,
        state_changed_at__gte=now - timedelta(seconds=cfg["PLACE_TIMEOUT_S"]),
    ):
        # The note below is the marker of the last attempt.
        if instance.events.filter(created_at__gte=now - requeue_after).exists():
            continue
        instance_note(
            instance=instance, source="reconciler", message="No worker had placed it yet; placement queued again"
        )
        due.append(instance.pk)
    return due


def instances_reconcile() -> dict[str, int]:
    now = timezone.now()
    done = {"failed": 0, "lost": 0, "stopped": 0, "warned": 0, "culled": 0}
    cfg = settings.INSTANCES

    stuck_requested = Instance.objects.filter(
        state=S.REQUESTED, state_changed_at__lt=now - timedelta(seconds=cfg["REQUEUE_AFTER_S"])
    )
    for instance in stuck_requested.filter(state_changed_at__lt=now - timedelta(seconds=cfg["PLACE_TIMEOUT_S"])):
        moved = instance_transition(
            instance_id=instance.pk,
            to_state=S.FAILED,
            expected_from=[S.REQUESTED],
            source="reconciler",
            message=f"Could not be placed within {cfg['PLACE_TIMEOUT_S']} s; nothing was started.",
        )
        if moved:
            # A launch holds its capacity from the request on: give it back.
            instance_capacity_release(instance=moved)
            done["failed"] += 1

    # Whatever ran on a node that went down is lost; its capacity stays held until the node is back.
    on_down_nodes = Instance.objects.filter(
        state__in=[S.SCHEDULED, S.PROVISIONING, S.RUNNING], node__state=NodeState.DOWN
    )
    for instance in on_down_nodes.select_related("node"):
        if instance_transition(
            instance_id=instance.pk,
            to_state=S.LOST,
            expected_from=[instance.state],
            source="reconciler",
            message=f"Lost: node {instance.node.hostname} stopped responding",
        ):
            # Its data may still be on the node when it comes back: not placed until wiped.
            instance_node_wipe_mark(instance=instance)
            done["lost"] += 1

    # Never became ready: fail it and give the capacity back; the agent is told to stop it.
    too_slow = Instance.objects.filter(
        state__in=[S.SCHEDULED, S.PROVISIONING], state_changed_at__lt=now - timedelta(seconds=cfg["START_TIMEOUT_S"])
    )
    for instance in too_slow:
        moved = instance_transition(
            instance_id=instance.pk,
            to_state=S.FAILED,
            expected_from=[S.SCHEDULED, S.PROVISIONING],
            source="reconciler",
            message=f"Failed: the notebook did not become ready within {cfg['START_TIMEOUT_S']} s",
        )
        if moved:
            instance_node_wipe_mark(instance=moved)  # bare metal: its start may have left data
            instance_capacity_release(instance=moved)
            done["failed"] += 1

    # A stop nobody confirmed: if the node is gone, the stop is done. A node that is up has the
    # stop in its list already (its version changed with it), and its agent repeats a report that
    # did not get through; nothing to remind it of.
    unconfirmed = Instance.objects.filter(
        state=S.STOPPING, state_changed_at__lt=now - timedelta(seconds=cfg["STOP_TIMEOUT_S"])
    )
    gone = unconfirmed.filter(Q(node__isnull=True) | Q(node__state=NodeState.DOWN))
    for instance in gone:
        moved = instance_transition(
            instance_id=instance.pk,
            to_state=S.STOPPED,
            expected_from=[S.STOPPING],
            source="reconciler",
            message="Stopped (its node is unreachable); capacity released",
        )
        if moved:
            instance_node_wipe_mark(instance=moved)  # bare metal: its data may be there when it is back
            instance_capacity_release(instance=moved)
            done["stopped"] += 1

    done.update(_idle_cull(now=now, cfg=cfg))
    return done


def _gpus_busy(instance: Instance, threshold: int) -> bool:
    if not instance.allocation_id:
        return False
    return (
        Gpu.objects.filter(slices__allocation_id=instance.allocation_id, slices__live=True)
        .filter(Q(utilization_pct__gte=threshold))
        .exists()
    )


def _idle_cull(*, now, cfg) -> dict[str, int]:
    """Idle: no busy kernel, no kernel activity for IDLE_AFTER_S and the GPUs under the threshold.
    A busy kernel or a busy GPU is never culled."""
    done = {"warned": 0, "culled": 0}
    idle_since = now - timedelta(seconds=cfg["IDLE_AFTER_S"])
    candidates = Instance.objects.filter(
        state=S.RUNNING,
        offering__kind="notebook",
        runtime__busy_kernels=0,
    ).filter(
        Q(runtime__last_activity_at__lt=idle_since)
        | Q(runtime__last_activity_at__isnull=True, runtime__started_at__lt=idle_since)
    )
    idle = [i for i in candidates.select_related("runtime") if not _gpus_busy(i, cfg["IDLE_GPU_UTIL_PCT"])]
    # Whoever was warned but got busy again starts a fresh idle period.
    busy_again = Instance.objects.filter(state=S.RUNNING, idle_warned_at__isnull=False).exclude(
        pk__in=[i.pk for i in idle]
    )
    for instance_id in busy_again.values_list("pk", flat=True):
        instance_idle_clear(instance_id=instance_id)
    for instance in idle:
        if instance.idle_warned_at is None:
            if instance_idle_warn(
                instance_id=instance.pk,
                at=now,
                message=f"Idle for {cfg['IDLE_AFTER_S'] // 60} min: it will be stopped in "
                f"{cfg['IDLE_GRACE_S'] // 60} min unless a kernel or the GPU gets busy",
            ):
                done["warned"] += 1
        elif instance.idle_warned_at < now - timedelta(seconds=cfg["IDLE_GRACE_S"]):
            if instance_transition(
                instance_id=instance.pk,
                to_state=S.STOPPING,
                expected_from=[S.RUNNING],
                source="reconciler",
                message="Stopping: idle (no kernel activity, GPU unused)",
            ):
                done["culled"] += 1
    return done
