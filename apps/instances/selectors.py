"""Reads of instances. Customer reads are scoped by organization; agent reads by node."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from django.db.models import Max, Prefetch, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from apps.accounts.roles import OrgAccess
from apps.capacity.models import AllocationSlice

from .models import Instance, InstanceEvent, InstanceRuntime, InstanceState

S = InstanceState
# Ended instances stay in a node's desired list this long, so that an agent that was away
# still learns to stop (or delete) them.
ENDED_VISIBLE_TO_AGENTS = timedelta(hours=24)


def instances_list(*, access: OrgAccess) -> QuerySet[Instance]:
    return (
        Instance.objects.filter(organization=access.organization)
        .exclude(state=S.TERMINATED)
        .select_related("flavor", "flavor__gpu_model", "offering", "image", "region", "node", "owner", "runtime")
    )


def instance_get(*, access: OrgAccess, instance_id) -> Instance:
    try:
        return (
            Instance.objects.filter(organization=access.organization)
            .select_related(
                "flavor", "flavor__gpu_model", "offering", "region", "node", "owner", "image", "allocation", "runtime"
            )
            .get(pk=instance_id)
        )
    except (Instance.DoesNotExist, ValueError) as exc:
        raise Http404("No such instance.") from exc


def instance_events(*, instance: Instance) -> QuerySet[InstanceEvent]:
    return instance.events.select_related("actor").order_by("created_at", "id")


def instance_gpus(*, instance: Instance) -> list[AllocationSlice]:
    """The GPUs (or MIG devices) the instance holds, with their latest telemetry."""
    if not instance.allocation_id:
        return []
    return list(
        AllocationSlice.objects.filter(allocation_id=instance.allocation_id)
        .select_related("gpu", "mig_device")
        .order_by("gpu__index")
    )


def node_desired_version(*, node_id: UUID) -> int:
    """Changes whenever any instance on the node changes state: agents long-poll on it."""
    return InstanceEvent.objects.filter(instance__node_id=node_id).aggregate(v=Max("id"))["v"] or 0


def node_desired_workloads(*, node_id: UUID) -> list[dict]:
    recent = timezone.now() - ENDED_VISIBLE_TO_AGENTS
    live = Q(state__in=[S.SCHEDULED, S.PROVISIONING, S.RUNNING, S.STOPPING])
    ended_recently = Q(state__in=[S.STOPPED, S.FAILED, S.LOST, S.TERMINATED], state_changed_at__gte=recent)
    instances = (
        Instance.objects.filter(Q(node_id=node_id) & (live | ended_recently))
        .select_related("image", "offering")
        .prefetch_related(
            Prefetch("allocation__slices", queryset=AllocationSlice.objects.select_related("gpu", "mig_device"))
        )
    )
    workloads = []
    for instance in instances:
        if instance.state in (S.SCHEDULED, S.PROVISIONING, S.RUNNING):
            desired = "running"
        elif instance.state == S.TERMINATED:
            desired = "deleted"
        else:
            desired = "stopped"
        slices = instance.allocation.slices.all() if instance.allocation_id else []
        workloads.append(
            {
                "id": str(instance.pk),
                "kind": instance.offering.kind,
                "state": desired,
                "gpus": [s.mig_device.uuid if s.mig_device_id else s.gpu.uuid for s in slices if s.live]
                if desired == "running"
                else [],
                "jupyter_args": list(instance.image.notebook_args or []),
            }
        )
    return workloads


def runtime_for_route(*, route_slot: str) -> InstanceRuntime | None:
    return (
        InstanceRuntime.objects.select_related("instance", "instance__organization")
        .filter(route_slot=route_slot, instance__state=S.RUNNING)
        .first()
    )
