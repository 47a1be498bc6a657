"""Placing an instance: hold capacity for it and hand its node the desired state.

A launch holds its capacity in the request's own transaction (`launch_capacity_hold`, called by
services.actions before the instance row exists), so a launch that is answered 201 has its GPUs
and one that cannot get them is refused (409) or queued then, never accepted and failed later.
The provision task (provisioning/tasks.py) then moves the requested instance to SCHEDULED on the
node of the allocation it already holds (`instance_schedule`); an instance started again has no
allocation yet and is allocated there, as before.

Lock order (portal/db.py): a launch takes quota and capacity (2, 5-8) before it inserts its
instance (3); the instance is new, so no other transaction can wait on it. `instance_schedule`
and the queue (services.queue) take capacity before the instance too; that is safe because no
transaction that holds a requested or queued instance's row takes capacity locks, except a stop,
which releases the allocation of its own instance, whose GPUs nobody locks while holding that
instance (the placement that held them has committed).
"""

from __future__ import annotations

from uuid import UUID

from celery import signature
from django.core.exceptions import ValidationError
from django.db import transaction

from apps.accounts.models import Organization, Project
from apps.capacity.errors import AllocationRefused, RefusalReason
from apps.capacity.models import Allocation, AllocationState, Reservation
from apps.capacity.selectors.availability import flavors_availability_by_region
from apps.capacity.services.allocations import allocation_create, allocation_gang_create, allocation_release
from apps.capacity.services.reservation_gpus import reservation_gpus_give_back, reservation_is_open
from apps.capacity.services.reservation_launch import reservations_keep_clear_check
from apps.capacity.services.wipe import node_wipe_pending_set
from apps.catalog.models import Flavor, OfferingKind, Region
from provisioning.drivers import PlacementNeeds
from provisioning.drivers.registry import driver_for_kind

from ..models import Instance, InstanceState
from .lifecycle import instance_transition
from .reservations import reservation_capacity_hold

S = InstanceState


# By name, as services.actions enqueues its tasks: provisioning's tasks import this module.
QUEUE_PLACE_TASK = "provisioning.tasks.instances_queue_place"


class LaunchUnplaceable(Exception):
    """No capacity for the launch anywhere the caller asked, and it did not ask to wait: the API
    answers 409 with `as_dict()`, the form shows `message` under the region. Nothing was saved."""

    def __init__(self, *, message: str, availability: list[dict]):
        super().__init__(message)
        self.message = message
        self.availability = availability

    def as_dict(self) -> dict:
        return {"reason": RefusalReason.NO_CAPACITY.value, "detail": self.message, "availability": self.availability}


def availability_by_region(*, flavor: Flavor) -> list[dict]:
    """How many of `flavor` could be placed now in each active region: a snapshot for people
    choosing where else to launch (a refused launch's answer)."""
    regions = list(Region.objects.filter(is_active=True))
    counts = flavors_availability_by_region(flavors=[flavor], regions=regions)
    return [
        {"region": region.code, "name": region.name, "available": counts[region.pk].get(flavor.pk, 0)}
        for region in regions
    ]


def capacity_take(
    *, organization: Organization, project: Project, flavor: Flavor, region: Region, holder: str
) -> Allocation:
    """Hold what the flavor's driver needs placed: the flavor's GPUs on one node, or, for a
    driver that asks for a whole node (bare metal), every GPU of one node of the flavor's model
    and size (a one-node gang: every GPU free and healthy, the node READY, wiped of its last
    tenant and not failing its last health check). Either way the instance holds ONE allocation
    on ONE node. Raises AllocationRefused."""
    if driver_for_kind(flavor.offering.kind).placement_needs().whole_node:
        gang = allocation_gang_create(
            organization=organization, flavor=flavor, region=region, project=project, holder=holder,
            whole_nodes=1, node_gpus=flavor.gpu_count,
        )
        held = gang.allocations[0]
    else:
        held = allocation_create(
            organization=organization, flavor=flavor, region=region, project=project, holder=holder
        )
    # On-demand capacity keeps clear of what reservations about to start still need: refused after
    # the hold, so the caller's savepoint gives it back (every caller takes inside one).
    reservations_keep_clear_check(flavor=flavor, region=region)
    return held


def launch_capacity_hold(
    *,
    holder_id: UUID,
    organization: Organization,
    project: Project,
    flavor: Flavor,
    region: Region,
    reservation: Reservation | None = None,
) -> Allocation:
    """Hold `flavor` in `region` for the instance about to be created as `holder_id`, inside the
    caller's transaction (a savepoint, so a refusal leaves it usable). Raises AllocationRefused;
    launched into a `reservation`, takes its GPUs out of what the reservation holds instead, or
    raises ValidationError with why not."""
    if reservation is not None:
        return reservation_capacity_hold(
            reservation=reservation, holder_id=holder_id, organization=organization, project=project, flavor=flavor
        )
    with transaction.atomic():
        return capacity_take(
            organization=organization, flavor=flavor, region=region, project=project, holder=f"instance:{holder_id}"
        )


def _queue_place_on_commit() -> None:
    transaction.on_commit(lambda: signature(QUEUE_PLACE_TASK).delay())


def queue_place_on_commit() -> None:
    """Capacity came back other than by a release here (a bare-metal node's wipe reported): let the
    queue place whoever waits once this transaction commits."""
    _queue_place_on_commit()


class LaunchSuperseded(Exception):
    """The instance left `requested` while we placed it: undo the allocation."""


def _scheduled_message(allocation: Allocation) -> str:
    node = allocation.node
    simulated = " (simulated)" if node.simulated else ""
    return f"Scheduled on node {node.hostname}{simulated}, {_placement_label(allocation)}"


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
    held = _allocation_held(instance)
    if held is not None:
        # The launch (or the queue) holds it already: only the node's desired state is left.
        return instance_transition(
            instance_id=instance.pk,
            to_state=S.SCHEDULED,
            expected_from=[S.REQUESTED],
            message=_scheduled_message(held),
            node_id=held.node_id,
        ) or Instance.objects.get(pk=instance.pk)
    needs = needs or driver_for_kind(instance.offering.kind).placement_needs()
    if not needs.gpus_on_one_node:
        return instance_transition(
            instance_id=instance.pk,
            to_state=S.FAILED,
            expected_from=[S.REQUESTED],
            message=f"{instance.offering.kind} workloads cannot be placed here yet; nothing was started.",
        )
    reservation = _reservation_open(instance)
    fields = {}
    if instance.reservation_id and reservation is None:
        fields["reservation"] = None  # its window is over: on-demand capacity from now, billed as such
    try:
        with transaction.atomic():
            # Started again within its reservation's window: on the reservation's GPUs again.
            allocation = launch_capacity_hold(
                holder_id=instance.pk,
                organization=instance.organization,
                project=instance.project,
                flavor=instance.flavor,
                region=instance.region,
                reservation=reservation,
            )
            moved = instance_transition(
                instance_id=instance.pk,
                to_state=S.SCHEDULED,
                expected_from=[S.REQUESTED],
                message=_scheduled_message(allocation),
                allocation=allocation,
                node_id=allocation.node_id,
                **fields,
            )
            if moved is None:
                raise LaunchSuperseded
            return moved
    except LaunchSuperseded:
        return Instance.objects.get(pk=instance.pk)
    except AllocationRefused as refused:
        return instance_transition(
            instance_id=instance.pk,
            to_state=S.FAILED,
            expected_from=[S.REQUESTED],
            message=refused.message,
        )
    except ValidationError as refused:  # its reservation has no room left
        return instance_transition(
            instance_id=instance.pk,
            to_state=S.FAILED,
            expected_from=[S.REQUESTED],
            message=" ".join(refused.messages),
        )


def _reservation_open(instance: Instance) -> Reservation | None:
    """The reservation `instance` was launched into, while it holds capacity (active, in its window)."""
    if not instance.reservation_id:
        return None
    reservation = Reservation.objects.select_related("flavor").filter(pk=instance.reservation_id).first()
    return reservation if reservation is not None and reservation_is_open(reservation=reservation) else None


def _allocation_held(instance: Instance) -> Allocation | None:
    if not instance.allocation_id:
        return None
    allocation = Allocation.objects.select_related("node").filter(pk=instance.allocation_id).first()
    if allocation is None or allocation.state == AllocationState.RELEASED:
        return None
    return allocation


def instance_node_wipe_mark(*, instance: Instance) -> None:
    """A bare-metal instance whose workload may have left data on its node (it was handed to the
    node and ends now): the node is placed nothing until its agent reports the wipe
    (apps/capacity/services/wipe.py). Call it in the transaction that ends the instance, before
    its capacity is released, so the node row is locked before the allocation and GPU rows."""
    if instance.node_id and instance.offering.kind == OfferingKind.BARE_METAL:
        node_wipe_pending_set(node_id=instance.node_id, instance_id=instance.pk)


def instance_capacity_release(*, instance: Instance) -> None:
    """Give the instance's capacity back (idempotent), and once that commits let the queue
    (services.queue) place whoever waits for it."""
    if instance.allocation_id:
        if instance.reservation_id:
            # GPUs lent by its reservation go back to it while its window is open (then nothing
            # is freed for the queue; a no-op wake-up), else they are released.
            reservation_gpus_give_back(allocation_id=instance.allocation_id)
        else:
            allocation_release(allocation_id=instance.allocation_id)
        _queue_place_on_commit()
