"""Holding a booked reservation's capacity for its window (booking is in services.reservations).

`reservations_due_run` (every ~30 s from Celery beat, plus one task at each start): a due
reservation takes its capacity with `allocation_gang_create`; if on-demand instances hold it, it
goes SHORT with the allocator's reason and is tried again on every pass until its window ends. At
its end the gang is given back. Both are idempotent: the reservation row is locked and its state
re-read first, so a pass and the start task racing hold it once.

Lock order (portal/db.py): the reservation row, then what the allocator takes (quota, GPU rows,
placement lock, summary rows).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from celery import signature
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Count, Sum
from django.utils import timezone

from portal.db import atomic_retry

from ..errors import AllocationRefused
from ..hooks import reservation_end_run
from ..models import BOOKED_RESERVATION_STATES, LIVE_ALLOCATION_STATES, WHOLE_GPU_MILLI, Allocation, Reservation
from .allocations import allocation_gang_create, allocation_gang_release, allocation_release
from .reservation_states import R, reservation_locked_get, reservation_transition, when

# Starts at most this far ahead get an ETA task; the periodic pass (as often) enqueues the rest.
ETA_HORIZON = timedelta(seconds=settings.CAPACITY_RESERVATIONS_EVERY_S)
# By name, as instances enqueue theirs: the task module imports this one.
START_TASK = "apps.capacity.tasks.reservation_start"


def reservation_start_enqueue(reservation: Reservation) -> None:
    """Hold it at its exact start (an ETA task); the periodic pass holds it anyway if this is lost.
    Only for a start within ETA_HORIZON: a worker keeps an ETA task in memory until it is due,
    and the Redis broker hands an unacknowledged one out again after its visibility timeout, so a
    task weeks ahead would pile up copies. Later starts are enqueued by the pass that comes
    within the horizon of them."""
    signature(START_TASK, args=(str(reservation.pk),)).apply_async(eta=reservation.starts_at)


@atomic_retry
def reservation_start(*, reservation_id: UUID, now: datetime | None = None) -> Reservation:
    """Hold a due reservation's capacity (SCHEDULED or SHORT → ACTIVE), or mark it SHORT with the
    allocator's reason. Does nothing before its start or to a reservation that is not waiting;
    ends one whose window is over."""
    now = now or timezone.now()
    reservation = reservation_locked_get(reservation_id=reservation_id)
    if reservation.state not in (R.SCHEDULED, R.SHORT) or now < reservation.starts_at:
        return reservation
    if now >= reservation.ends_at:
        return _end(reservation=reservation, now=now)
    try:
        gang = allocation_gang_create(
            organization=reservation.organization,
            project=reservation.project,
            flavor=reservation.flavor,
            region=reservation.region,
            gpus=reservation.gpus,
            whole_nodes=reservation.whole_nodes,
            # A whole-node reservation is nodes of its flavor's size, as bare metal is.
            node_gpus=reservation.flavor.gpu_count if reservation.whole_nodes is not None else None,
            holder=reservation.holder,
        )
    except (AllocationRefused, ValidationError) as refused:
        message = refused.message if isinstance(refused, AllocationRefused) else "; ".join(refused.messages)
        reason = f"Its capacity could not be held: {message}"
        if reservation.state == R.SCHEDULED:
            return reservation_transition(reservation=reservation, to_state=R.SHORT, reason=reason, at=now)
        Reservation.objects.filter(pk=reservation.pk).update(reason=reason[:300])
        return reservation
    # On time, it is held from its start; held late (it was short), from now: billing charges from here.
    held_from = reservation.held_from or (reservation.starts_at if reservation.state == R.SCHEDULED else now)
    return reservation_transition(
        reservation=reservation,
        to_state=R.ACTIVE,
        at=now,
        gang_id=gang.gang_id,
        held_from=held_from,
        reason=f"Held until {when(reservation.ends_at)}",
    )


def _end(*, reservation: Reservation, now: datetime) -> Reservation:
    # Instances running on its GPUs are stopped first (apps above capacity subscribe), then the
    # whole gang, what it lent included, is given back.
    reservation_end_run(reservation=reservation, at=now)
    if reservation.gang_id is not None:
        allocation_gang_release(gang_id=reservation.gang_id)
    reason = "Window over; capacity given back" if reservation.held_from else "Window over; its capacity was never held"
    return reservation_transition(reservation=reservation, to_state=R.ENDED, reason=reason, at=now)


@atomic_retry
def reservation_end(*, reservation_id: UUID, now: datetime | None = None) -> Reservation:
    """Give back a reservation whose window is over. Does nothing earlier, or to one already done."""
    now = now or timezone.now()
    reservation = reservation_locked_get(reservation_id=reservation_id)
    if reservation.state not in BOOKED_RESERVATION_STATES or now < reservation.ends_at:
        return reservation
    return _end(reservation=reservation, now=now)


def _gangs_whole(*, reservations: list[Reservation]) -> dict[UUID, bool]:
    """Whether each reservation's gang still holds all it asked for (live members: active, or lost
    on a node that may come back), in one query."""
    live = {
        row["gang_id"]: row
        for row in Allocation.objects.filter(
            gang_id__in=[r.gang_id for r in reservations if r.gang_id], state__in=LIVE_ALLOCATION_STATES
        )
        .values("gang_id")
        # Instances' allocations on lent GPUs share the gang id (services.reservation_gpus): the
        # milli add up to what is held, and a node counts once however many it carries.
        .annotate(milli=Sum("gpu_milli"), nodes=Count("node", distinct=True))
        .order_by()
    }
    whole = {}
    for r in reservations:
        held = live.get(r.gang_id, {"milli": 0, "nodes": 0})
        whole[r.pk] = (
            held["milli"] >= r.gpus * WHOLE_GPU_MILLI if r.gpus is not None else held["nodes"] >= r.whole_nodes
        )
    return whole


@atomic_retry
def reservation_hold_check(*, reservation_id: UUID, now: datetime | None = None) -> Reservation:
    """An active reservation whose gang is no longer whole (a node went down, its allocations were
    lost, and released when it came back, as lost workloads' are) goes SHORT, giving back what is
    left, so the pass holds it again in full. Lost but not yet released members still hold their
    GPUs: the node may come back with them, so that is not short yet."""
    now = now or timezone.now()
    reservation = reservation_locked_get(reservation_id=reservation_id)
    if reservation.state != R.ACTIVE or reservation.gang_id is None:
        return reservation
    if _gangs_whole(reservations=[reservation])[reservation.pk]:
        return reservation
    # Only its own members: GPUs it lent to running instances stay theirs (released when they
    # stop, as on-demand ones are), never freed under a running workload.
    own = Allocation.objects.filter(
        gang_id=reservation.gang_id, holder=reservation.holder, state__in=LIVE_ALLOCATION_STATES
    ).order_by("id")
    for allocation_id in own.values_list("pk", flat=True):
        allocation_release(allocation_id=allocation_id)
    return reservation_transition(
        reservation=reservation,
        to_state=R.SHORT,
        at=now,
        gang_id=None,
        reason="Part of its held capacity was lost with a node; holding it again",
    )


def reservations_due_run(*, now: datetime | None = None) -> dict[str, int]:
    """The periodic pass: end what is over, then hold what is due (its own transaction each, so one
    that fails stops no other). Returns how many reservations each step touched."""
    now = now or timezone.now()
    over = Reservation.objects.filter(state__in=BOOKED_RESERVATION_STATES, ends_at__lte=now)
    ended = 0
    for reservation_id in over.order_by("ends_at").values_list("pk", flat=True):
        ended += reservation_end(reservation_id=reservation_id, now=now).state == R.ENDED
    # Two queries for every active reservation; a transaction only for one whose gang is not whole.
    held = list(
        Reservation.objects.filter(state=R.ACTIVE, ends_at__gt=now).only("id", "gang_id", "gpus", "whole_nodes")
    )
    for reservation_id, whole in _gangs_whole(reservations=held).items():
        if not whole:
            reservation_hold_check(reservation_id=reservation_id, now=now)
    due = Reservation.objects.filter(state__in=(R.SCHEDULED, R.SHORT), starts_at__lte=now, ends_at__gt=now)
    started = short = 0
    for reservation_id in due.order_by("starts_at").values_list("pk", flat=True):
        state = reservation_start(reservation_id=reservation_id, now=now).state
        started += state == R.ACTIVE
        short += state == R.SHORT
    # Held on the second of their start rather than at the next pass (reservation_start is idempotent
    # if two passes enqueue one).
    soon = Reservation.objects.filter(state=R.SCHEDULED, starts_at__gt=now, starts_at__lte=now + ETA_HORIZON)
    for reservation in soon.only("id", "starts_at"):
        reservation_start_enqueue(reservation)
    return {"ended": ended, "started": started, "short": short}
