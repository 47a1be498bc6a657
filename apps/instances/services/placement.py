"""Placing a requested instance: hold capacity for it and hand its node the desired state.

Called by the provision task (provisioning/tasks.py) with the instance it loaded and what its
driver says the workload needs; it never calls a driver back."""

from __future__ import annotations

from uuid import UUID

from django.db import transaction

from apps.capacity.errors import AllocationRefused
from apps.capacity.models import Allocation
from apps.capacity.services.allocations import allocation_create, allocation_release
from provisioning.drivers import PlacementNeeds
from provisioning.drivers.registry import driver_for_kind

from ..models import Instance, InstanceState
from .lifecycle import instance_transition

S = InstanceState


class _Superseded(Exception):
    """The instance left `requested` while we placed it: undo the allocation."""


def _placement_label(allocation: Allocation) -> str:
    parts = []
    for piece in allocation.slices.select_related("gpu", "mig_device").order_by("gpu__index"):
        if piece.mig_device_id:
            parts.append(f"GPU {piece.gpu.index} MIG {piece.mig_device.profile}")
        elif piece.milli < 1000:
            parts.append(f"GPU {piece.gpu.index} ({piece.milli / 10:.0f}%)")
        else:
            parts.append(f"GPU {piece.gpu.index}")
    return ", ".join(parts)


def instance_schedule(
    *, instance: Instance | None = None, instance_id: UUID | None = None, needs: PlacementNeeds | None = None
) -> Instance | None:
    """Allocate capacity for a requested instance and mark it scheduled, or failed with the
    allocator's reason. Idempotent: an instance no longer requested is left as it is. Give the
    `instance` already loaded (with flavor, region, organization and project) to spare a read;
    `needs` defaults to what the driver of its kind says."""
    if instance is None:
        instance = (
            Instance.objects.select_related("offering", "flavor", "region", "organization", "project")
            .filter(pk=instance_id)
            .first()
        )
    if instance is None or instance.state != S.REQUESTED:
        return instance
    needs = needs or driver_for_kind(instance.offering.kind).placement_needs()
    if not needs.gpus_on_one_node:
        return instance_transition(
            instance_id=instance.pk,
            to_state=S.FAILED,
            expected_from=[S.REQUESTED],
            message=f"{instance.offering.kind} workloads cannot be placed here yet; nothing was started.",
        )
    try:
        with transaction.atomic():
            allocation = allocation_create(
                organization=instance.organization,
                flavor=instance.flavor,
                region=instance.region,
                project=instance.project,
                holder=f"instance:{instance.pk}",
            )
            node = allocation.node
            moved = instance_transition(
                instance_id=instance.pk,
                to_state=S.SCHEDULED,
                expected_from=[S.REQUESTED],
                message=f"Scheduled on node {node.hostname}{' (simulated)' if node.simulated else ''}, "
                f"{_placement_label(allocation)}",
                allocation=allocation,
                node_id=node.pk,
            )
            if moved is None:
                raise _Superseded
            return moved
    except _Superseded:
        return Instance.objects.get(pk=instance.pk)
    except AllocationRefused as refused:
        return instance_transition(
            instance_id=instance.pk,
            to_state=S.FAILED,
            expected_from=[S.REQUESTED],
            message=refused.message,
        )


def instance_capacity_release(*, instance: Instance) -> None:
    """Give the instance's capacity back (idempotent)."""
    if instance.allocation_id:
        allocation_release(allocation_id=instance.allocation_id)
