"""Instances running on a reservation's held GPUs: lending whole GPUs of an active reservation's
gang to an instance on one member node, and taking them back when the instance stops.

The GPUs never pass through the free pool: their `AllocationSlice` rows move from the
reservation's member allocation (holder "reservation:<id>") to a new allocation of the instance on
the same node, and back. `Gpu.allocated_milli` and `NodeCapacity` do not change, so no other
launch can see them free in between, and the allocator's invariant (a GPU's allocated_milli is
the sum of its live slices') holds throughout.

The instance's allocation carries the reservation's `gang_id`: the gang's live members (the
reservation's own, and what it lent) still add up to what it holds (services.reservations'
`_gangs_whole`), and its release at the window's end gives all of it back. Which are lent is
read from the holder. A member the reservation has lent everything of stays live at 0 GPUs, so
the node stays counted as one of the gang's.

Lock order (portal/db.py): allocations (5) in id order, as a gang release takes them (a
reservation's members are older than what they lend), then the node's placement lock (7): a take
locks the reservation's members, a give-back its member on the node and the lent allocation.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from apps.accounts.models import Organization, Project
from apps.catalog.models import Flavor
from portal.db import atomic_retry

from ..models import (
    WHOLE_GPU_MILLI,
    Allocation,
    AllocationSlice,
    AllocationState,
    GpuHealth,
    Node,
    NodeState,
    Reservation,
    ReservationState,
)
from .allocations import NODE_PLACEMENT_LOCK, allocation_release


@dataclass(frozen=True)
class ReservationRoom:
    """What a reservation could lend when it had too little: its size, the most whole GPUs free
    on one of its nodes, and the holders ("instance:<id>") of what it has lent."""

    gpus: int
    free_on_one_node: int
    borrowers: list[str]


class ReservationFull(Exception):
    """No member node of the reservation has the flavor's GPUs left; nothing was taken. The
    instances app names the borrowers (capacity knows only their holders)."""

    def __init__(self, *, reservation: Reservation, room: ReservationRoom, wanted: int):
        super().__init__(f"reservation {reservation.pk} has no {wanted} GPUs left on one node")
        self.reservation, self.room, self.wanted = reservation, room, wanted


class ReservationNotHeld(Exception):
    """The reservation is not holding capacity now (not active, or its window is over)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def reservation_is_open(*, reservation: Reservation, now=None) -> bool:
    now = now or timezone.now()
    return (
        reservation.state == ReservationState.ACTIVE and reservation.gang_id is not None and now < reservation.ends_at
    )


def _lendable(member_ids: list[int]) -> dict[int, list[int]]:
    """Per member allocation, its live whole healthy GPU slices, by GPU index."""
    by_member: dict[int, list[int]] = {m: [] for m in member_ids}
    rows = (
        AllocationSlice.objects.filter(
            allocation_id__in=member_ids,
            live=True,
            mig_device__isnull=True,
            milli=WHOLE_GPU_MILLI,
            gpu__health=GpuHealth.OK,
        )
        .order_by("gpu__index", "id")
        .values_list("allocation_id", "pk")
    )
    for member_id, slice_id in rows:
        by_member[member_id].append(slice_id)
    return by_member


def reservation_gpus_take(
    *,
    reservation: Reservation,
    organization: Organization,
    project: Project,
    flavor: Flavor,
    holder: str,
) -> Allocation:
    """Inside the caller's transaction: lend `flavor.gpu_count` whole GPUs of the active
    `reservation` to `holder`, on one of its member nodes (the fullest that still has room, so
    larger flavors keep fitting), as one new allocation. Raises ReservationNotHeld or
    ReservationFull; nothing is written then.

    Quotas are not checked again: the organization's usage does not change (the GPUs were held
    by its reservation already)."""
    if not reservation_is_open(reservation=reservation):
        raise ReservationNotHeld("This reservation is not holding capacity now.")
    wanted = flavor.gpu_count
    members = list(
        Allocation.objects.select_for_update(no_key=True)
        .filter(gang_id=reservation.gang_id, holder=reservation.holder, state=AllocationState.ACTIVE)
        .order_by("id")
        .values_list("pk", "node_id")
    )
    if not members:  # its gang was given back since it was read (ended, or gone short)
        raise ReservationNotHeld("This reservation is not holding capacity now.")
    lendable = _lendable([pk for pk, _ in members])
    # As every placement does, nothing goes on a node still waiting for a bare-metal tenant's wipe.
    unwiped = set(
        Node.objects.filter(
            pk__in=[node_id for _, node_id in members], wipe_pending_instance__isnull=False
        ).values_list("pk", flat=True)
    )
    fitting = sorted(
        (len(lendable[pk]), str(node_id), pk, node_id)
        for pk, node_id in members
        if len(lendable[pk]) >= wanted and node_id not in unwiped
    )
    if not fitting:
        borrowers = list(
            Allocation.objects.filter(
                gang_id=reservation.gang_id, state__in=(AllocationState.ACTIVE, AllocationState.LOST)
            )
            .exclude(holder=reservation.holder)
            .order_by("created_at", "id")
            .values_list("holder", flat=True)
        )
        room = ReservationRoom(
            gpus=reservation.gpus
            if reservation.gpus is not None
            else reservation.whole_nodes * reservation.flavor.gpu_count,
            free_on_one_node=max((len(s) for s in lendable.values()), default=0),
            borrowers=borrowers,
        )
        raise ReservationFull(reservation=reservation, room=room, wanted=wanted)
    _, _, member_id, node_id = fitting[0]
    # As a placement records on a node (allocations.py step 3): a node going down waits for this
    # to commit, then marks the new allocation lost with the rest; one already down is refused.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock_shared(%s, hashtext(%s::uuid::text))", [NODE_PLACEMENT_LOCK, str(node_id)]
        )
    if not Allocation.objects.filter(pk=member_id, state=AllocationState.ACTIVE, node__state=NodeState.READY).exists():
        raise ReservationNotHeld("The reservation's node is not ready; try again in a moment.")
    milli = wanted * WHOLE_GPU_MILLI
    lent = Allocation.objects.create(
        organization=organization,
        project=project,
        flavor=flavor,
        node_id=node_id,
        gang_id=reservation.gang_id,
        state=AllocationState.ACTIVE,
        gpu_milli=milli,
        holder=holder,
        created_at=timezone.now(),
    )
    moved = AllocationSlice.objects.filter(
        pk__in=lendable[member_id][:wanted], allocation_id=member_id, live=True
    ).update(allocation=lent)
    if moved != wanted:  # a backstop: the members' row locks keep two takes from reading the same slices
        raise ReservationNotHeld("The reservation's GPUs changed meanwhile; try again in a moment.")
    Allocation.objects.filter(pk=member_id).update(gpu_milli=F("gpu_milli") - milli)
    return lent


@atomic_retry
def reservation_gpus_give_back(*, allocation_id: int) -> Allocation:
    """An instance's allocation ends: GPUs lent by a reservation whose window is still open go
    back to its member on the same node (held for it again, never free in between); anything
    else is released as usual (allocation_release). Idempotent."""
    allocation = Allocation.objects.filter(pk=allocation_id).first()
    if allocation is None:
        raise Allocation.DoesNotExist(f"Allocation {allocation_id} does not exist.")
    reservation = None
    if allocation.state == AllocationState.ACTIVE and allocation.gang_id is not None:
        reservation = Reservation.objects.filter(gang_id=allocation.gang_id).first()
    # A gang's own members (a reservation's, a bare-metal node's) are not lent: released as usual.
    if (
        reservation is None
        or allocation.holder == reservation.holder
        or not reservation_is_open(reservation=reservation)
    ):
        return allocation_release(allocation_id=allocation_id)
    # The member and the lent allocation together, in id order (the member is the older), as a
    # gang release locks them: the window's end racing this stop waits, it does not deadlock.
    locked = {
        a.pk: a
        for a in Allocation.objects.select_for_update(no_key=True)
        .filter(
            Q(pk=allocation_id) | Q(gang_id=reservation.gang_id, holder=reservation.holder, node_id=allocation.node_id)
        )
        .filter(state=AllocationState.ACTIVE)
        .order_by("id")
    }
    allocation = locked.pop(allocation_id, None)
    member = next(iter(locked.values()), None)
    if allocation is None or member is None:
        # Released meanwhile, or its member on that node was lost and released: nothing to return to.
        return allocation_release(allocation_id=allocation_id)
    AllocationSlice.objects.filter(allocation=allocation, live=True).update(allocation=member)
    Allocation.objects.filter(pk=member.pk).update(gpu_milli=F("gpu_milli") + allocation.gpu_milli)
    Allocation.objects.filter(pk=allocation.pk).update(state=AllocationState.RELEASED, released_at=timezone.now())
    allocation.refresh_from_db()
    return allocation
