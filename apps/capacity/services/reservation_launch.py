"""Reservations seen from a launch (apps.instances calls these, inside its launch transaction):
launching into one, and on-demand launches keeping clear of what reservations about to start
still need. Booking, holding and the lock they share are in services.reservations."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Sum
from django.utils import timezone

from apps.accounts.models import Organization
from apps.catalog.models import Flavor, Region, SliceKind

from ..errors import AllocationRefused, RefusalReason
from ..models import NodeCapacity, NodeState, Reservation, ReservationState
from ..selectors.reservations import DEMAND_FIELDS, demand, fleet_capacity_get
from .reservations import booking_lock, when

R = ReservationState


# --- launching into one -----------------------------------------------------------------------------


def reservation_launch_check(
    *, organization: Organization, flavor: Flavor, region: Region, reservation_id: UUID, now: datetime | None = None
) -> Reservation:
    """The reservation an instance is launched into, if it may be: the caller's own, active now, of
    the flavor's GPU model and region; else ValidationError({"reservation": why}), before anything
    is written."""
    now = now or timezone.now()
    reservation = (
        Reservation.objects.select_related("gpu_model", "region")
        .filter(pk=reservation_id, organization=organization)
        .first()
    )
    if reservation is None:
        raise ValidationError({"reservation": "No such reservation in this organization."})
    if reservation.state == R.SCHEDULED or now < reservation.starts_at:
        raise ValidationError(
            {"reservation": f"This reservation starts at {when(reservation.starts_at)}; launch into it from then."}
        )
    if reservation.state in (R.ENDED, R.CANCELLED) or now >= reservation.ends_at:
        raise ValidationError({"reservation": f"This reservation is {reservation.get_state_display().lower()}."})
    if reservation.state == R.SHORT:
        raise ValidationError({"reservation": f"This reservation is short. {reservation.reason}"})
    if flavor.gpu_model_id != reservation.gpu_model_id or flavor.slice_kind != SliceKind.WHOLE:
        raise ValidationError(
            {"reservation": f"This reservation holds {reservation.gpu_model.name} GPUs; {flavor.name} is not one."}
        )
    if region.pk != reservation.region_id:
        raise ValidationError({"reservation": f"This reservation is in {reservation.region.code}, not {region.code}."})
    return reservation


# --- on-demand launches keep clear of reservations about to start -----------------------------------

# On-demand capacity has no end, so any launch may still hold GPUs when a later reservation starts.
# Launches keep clear of what reservations starting within this horizon (and short ones) still need.
KEEP_CLEAR_AHEAD = timedelta(hours=settings.CAPACITY_RESERVATIONS_KEEP_CLEAR_H)


def reservations_keep_clear_check(*, flavor: Flavor, region: Region, now: datetime | None = None) -> None:
    """After an on-demand hold, inside its transaction: raise AllocationRefused when the whole GPUs
    of the flavor's model left free in the region no longer cover what booked reservations that
    are not yet held (scheduled ones starting within KEEP_CLEAR_AHEAD, short ones) will need at
    their peak. The caller rolls its hold back with it.

    Taken under the booking lock of the region and model, so launches checking at once follow one
    another, each reading (a new statement under READ COMMITTED) what the one before committed.
    One query when no reservation is pending (the usual case), four otherwise."""
    if flavor.gpu_model_id is None:
        return
    now = now or timezone.now()
    pending = list(
        Reservation.objects.filter(
            region=region,
            gpu_model_id=flavor.gpu_model_id,
            starts_at__lt=now + KEEP_CLEAR_AHEAD,
            ends_at__gt=now,
        )
        .filter(state__in=(R.SCHEDULED, R.SHORT))
        .select_related("flavor")
        .only(*DEMAND_FIELDS)
    )
    if not pending:
        return
    booking_lock(region=region, gpu_model_id=flavor.gpu_model_id)
    free = (
        NodeCapacity.objects.filter(
            region=region, gpu_model_id=flavor.gpu_model_id, node__state=NodeState.READY
        ).aggregate(n=Sum("free_whole_gpus"))["n"]
        or 0
    )
    fleet = fleet_capacity_get(region=region, gpu_model=flavor.gpu_model)
    peak, peak_at = 0, now
    for moment in sorted({max(r.starts_at, now) for r in pending}):
        gpus, nodes = demand(r for r in pending if r.starts_at <= moment < r.ends_at)
        needed = fleet.gpus_needed(gpus=gpus, nodes=nodes)
        needed = needed if needed is not None else fleet.gpus
        if needed > peak:
            peak, peak_at = needed, moment
    if free < peak:
        raise AllocationRefused(
            RefusalReason.RESERVED_FOR_RESERVATIONS,
            f"The {flavor.gpu_model.name} GPUs still free in {region.code} are reserved from {when(peak_at)}; "
            "choose another region, a later time, or launch into a reservation of your own.",
        )
