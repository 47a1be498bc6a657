"""Instances in a reservation: placed on GPUs the reservation holds (capacity lends them,
apps/capacity/services/reservation_gpus.py). Stopping them at the window's end is in
services.reservation_end."""

from __future__ import annotations

from uuid import UUID

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.accounts.models import Organization, Project
from apps.capacity.models import Allocation, Reservation
from apps.capacity.services.reservation_gpus import ReservationFull, ReservationNotHeld, reservation_gpus_take
from apps.catalog.models import Flavor

from ..models import Instance

PREFIX = "instance:"


def reservation_full_message(full: ReservationFull) -> str:
    """Why a reservation has no room for a launch, naming the organization's instances in it."""
    ids = [holder.removeprefix(PREFIX) for holder in full.room.borrowers if holder.startswith(PREFIX)]
    names = dict(Instance.objects.filter(pk__in=ids).values_list("pk", "name"))
    in_use = ", ".join(names.get(UUID(i), i) for i in ids) or "none"
    reservation, room = full.reservation, full.room
    if room.free_on_one_node == 0:
        return f"All {room.gpus} GPUs of reservation {reservation.pk} are in use by your instances {in_use}."
    return (
        f"Reservation {reservation.pk} has at most {room.free_on_one_node} GPUs left on one node; "
        f"{full.wanted} are needed. In use by your instances {in_use}."
    )


def reservation_capacity_hold(
    *, reservation: Reservation, holder_id: UUID, organization: Organization, project: Project, flavor: Flavor
) -> Allocation:
    """Hold `flavor`'s GPUs for the instance `holder_id` out of `reservation`, inside the caller's
    transaction (a savepoint, so a refusal leaves it usable). Raises ValidationError on the
    `reservation` field with the reason (no room left, not holding now); nothing is held then."""
    try:
        with transaction.atomic():
            return reservation_gpus_take(
                reservation=reservation,
                organization=organization,
                project=project,
                flavor=flavor,
                holder=f"{PREFIX}{holder_id}",
            )
    except ReservationFull as full:
        raise ValidationError({"reservation": reservation_full_message(full)}) from full
    except ReservationNotHeld as not_held:
        raise ValidationError({"reservation": not_held.message}) from not_held
