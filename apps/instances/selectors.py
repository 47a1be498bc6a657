"""Reads of instances. Customer reads are scoped by organization; agent reads by node."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from django.db.models import Prefetch, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from apps.accounts.roles import OrgAccess
from apps.capacity.models import AllocationSlice
from provisioning.drivers import WorkloadFacts
from provisioning.drivers.registry import driver_for_kind
from provisioning.protocol import DESIRED_RUNNING

from .models import Instance, InstanceEvent, InstanceRuntime, InstanceState, NodeWorkloads
from .services.desired import DESIRED_BY_STATE

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
    """The GPUs (or MIG devices) the instance holds, with their latest telemetry. A released
    allocation keeps its slices (not live) as history: those are no longer the instance's."""
    if not instance.allocation_id:
        return []
    return list(
        AllocationSlice.objects.filter(allocation_id=instance.allocation_id, live=True)
        .select_related("gpu", "mig_device")
        .order_by("gpu__index")
    )


def node_desired_version(*, node_id: UUID) -> int:
    """The version of the node's desired workloads: changes exactly when the list below does
    (services.desired); 0 for a node that never had any."""
    return NodeWorkloads.objects.filter(node_id=node_id).values_list("version", flat=True).first() or 0


def node_desired_workloads(*, node_id: UUID) -> list[dict]:
    """The node's desired workloads, each the spec its kind's driver builds (the shared
    protocol's wire format)."""
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
        desired = DESIRED_BY_STATE[instance.state]
        slices = instance.allocation.slices.all() if instance.allocation_id and desired == DESIRED_RUNNING else []
        facts = WorkloadFacts(
            id=str(instance.pk),
            kind=instance.offering.kind,
            desired=desired,
            gpus=tuple(s.mig_device.uuid if s.mig_device_id else s.gpu.uuid for s in slices if s.live),
            image_args=tuple(instance.image.notebook_args or []),
            authorized_keys=tuple(instance.ssh_authorized_keys or []),
        )
        workloads.append(driver_for_kind(facts.kind).workload_spec(facts).to_wire())
    return workloads


def runtime_for_route(*, route_slot: str) -> InstanceRuntime | None:
    return (
        InstanceRuntime.objects.select_related("instance", "instance__organization")
        .filter(route_slot=route_slot, instance__state=S.RUNNING)
        .first()
    )
