"""Reservations: whole GPUs or whole nodes of a GPU model in a region, promised for a future
window, and held as a gang allocation (holder "reservation:<id>") from its start to its end.

This module books and calls off. Holding the capacity for the window (start, end, the periodic
pass) is in services.reservation_hold, the state machine both share in services.reservation_states;
their public names are importable from here too, as callers always have.

Booking (`reservation_create`) answers at once: a request that cannot be met is refused with the
reason, and nothing is written. It fits when, at every instant of its window, it plus every booked
reservation overlapping that instant fits the region's fleet of that GPU model
(selectors.reservations). Two bookings for the same region and model are made one after the other
under a transaction-scoped advisory lock of that pair, so two that each fit alone but not
together can never both be booked; bookings of other pairs do not wait.

Lock order (portal/db.py): the booking lock, then the reservation row, then what the allocator
takes (quota, GPU rows, placement lock, summary rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from apps.accounts.models import Organization, Project
from apps.accounts.roles import OrgAccess
from apps.catalog.models import Flavor, PriceUnit, Region, SliceKind
from apps.catalog.selectors import price_current
from portal.db import atomic_retry

from ..hooks import booking_checks_run
from ..live_reservations import reservations_changed_on_commit
from ..models import Quota, Reservation, ReservationEvent
from ..selectors.reservations import fleet_capacity_get, reservations_overlapping, window_shortfall
from . import reservation_hold
from .reservation_hold import (  # noqa: F401 - re-exported: callers import the hold pass from here
    ETA_HORIZON,
    START_TASK,
    reservation_end,
    reservation_hold_check,
    reservation_start,
    reservations_due_run,
)
from .reservation_states import (  # noqa: F401 - re-exported: callers import these from here
    R,
    ReservationTransitionRefused,
    reservation_locked_get,
    reservation_transition,
    when,
)

MIN_WINDOW = timedelta(hours=1)
MAX_WINDOW = timedelta(days=90)
MAX_LEAD = timedelta(days=365)  # how far ahead a window may start
START_GRACE = timedelta(minutes=5)  # a window "starting now" may have begun a moment ago
MAX_COUNT = 4096
# pg_advisory_xact_lock namespace for "a reservation of region × GPU model is being booked".
BOOKING_LOCK = 0x7265_7376  # "resv"


# --- booking -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Quote:
    units: int
    hourly_amount: Decimal
    currency: str


def _request_check(
    *,
    flavor: Flavor,
    region: Region,
    gpus: int | None,
    whole_nodes: int | None,
    starts_at: datetime,
    ends_at: datetime,
    now: datetime,
) -> None:
    """What a request must satisfy before the fleet is looked at; ValidationError names the field."""
    if flavor.gpu_model_id is None or flavor.slice_kind != SliceKind.WHOLE:
        raise ValidationError({"flavor": f"{flavor.name} is not whole GPUs; only whole GPUs or nodes are reserved."})
    if not region.is_active:
        raise ValidationError({"region": f"{region.code} is not taking reservations."})
    if (gpus is None) == (whole_nodes is None):
        raise ValidationError({"gpus": "Ask for a number of GPUs or a number of whole nodes, not both."})
    field, count = ("gpus", gpus) if gpus is not None else ("whole_nodes", whole_nodes)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_COUNT:
        raise ValidationError({field: f"Ask for 1 to {MAX_COUNT}."})
    if gpus is not None and gpus % flavor.gpu_count:
        raise ValidationError(
            {"gpus": f"{flavor.name} comes in {flavor.gpu_count} GPUs; ask for a multiple of {flavor.gpu_count}."}
        )
    if ends_at <= starts_at:
        raise ValidationError({"ends_at": "The window must end after it starts."})
    if ends_at <= now:
        raise ValidationError({"ends_at": f"That window is over (it is {when(now)} now)."})
    if starts_at < now - START_GRACE:
        raise ValidationError({"starts_at": f"That start is in the past (it is {when(now)} now)."})
    if starts_at > now + MAX_LEAD:
        raise ValidationError({"starts_at": f"Reserve at most {MAX_LEAD.days} days ahead."})
    if ends_at - starts_at < MIN_WINDOW:
        raise ValidationError({"ends_at": "Reserve at least one hour."})
    if ends_at - starts_at > MAX_WINDOW:
        raise ValidationError({"ends_at": f"Reserve at most {MAX_WINDOW.days} days at a time."})


def _quote(*, flavor: Flavor, region: Region, gpus: int | None, whole_nodes: int | None, now: datetime) -> _Quote:
    currency = settings.BILLING["CURRENCY"]
    price = price_current(flavor=flavor, region=region, unit=PriceUnit.HOUR, currency=currency, at=now)
    if price is None:
        raise ValidationError({"flavor": f"{flavor.name} has no hourly price in {currency}; it cannot be reserved."})
    units = gpus // flavor.gpu_count if gpus is not None else whole_nodes
    return _Quote(units=units, hourly_amount=price.amount, currency=price.currency)


def _quota_ceiling_check(
    *, organization: Organization, project: Project, flavor: Flavor, gpus: int | None, whole_nodes: int | None
) -> None:
    """A reservation larger than the organization's (or project's) GPU ceiling could never be held
    (the allocator checks quotas at its start): refused now. What else the organization holds then
    is not known yet, so only the ceiling itself is checked; the start checks the rest."""
    ceilings = Quota.objects.filter(organization=organization).filter(Q(project__isnull=True) | Q(project=project))
    size = gpus if gpus is not None else whole_nodes * flavor.gpu_count
    for quota in ceilings.select_related("project"):
        if size > quota.max_gpus:
            who = f"Project {quota.project.name}" if quota.project_id else organization.name
            raise ValidationError(
                {
                    "gpus"
                    if gpus is not None
                    else "whole_nodes": f"{who} may use at most {quota.max_gpus.normalize()} "
                    f"GPUs (its quota); this reservation needs {size}."
                }
            )


def booking_lock(*, region: Region, gpu_model_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [BOOKING_LOCK, f"{region.pk}:{gpu_model_id}"])


def reservation_feasibility_check(
    *,
    flavor: Flavor,
    region: Region,
    starts_at: datetime,
    ends_at: datetime,
    gpus: int | None = None,
    whole_nodes: int | None = None,
) -> None:
    """Raise ValidationError with the reason when the window cannot be met beside what is booked.
    Exact only under the booking lock (reservation_create takes it); without it, an early answer."""
    fleet = fleet_capacity_get(region=region, gpu_model=flavor.gpu_model)
    booked = reservations_overlapping(region=region, gpu_model=flavor.gpu_model, starts_at=starts_at, ends_at=ends_at)
    short = window_shortfall(
        fleet=fleet,
        booked=booked,
        starts_at=starts_at,
        ends_at=ends_at,
        gpus=gpus,
        whole_nodes=whole_nodes,
        node_gpus=flavor.gpu_count,
    )
    if short is None:
        return
    model = flavor.gpu_model.name
    if fleet.gpus == 0:
        message = f"{region.code} has no {model} GPUs to reserve."
    elif whole_nodes is not None:
        message = (
            f"From {when(short.starts_at)} to {when(short.ends_at)} only {short.free} of {short.total} whole "
            f"{flavor.gpu_count}-GPU {model} nodes in {region.code} are not reserved; you asked for {whole_nodes}."
        )
    else:
        message = (
            f"From {when(short.starts_at)} to {when(short.ends_at)} only {short.free} of {short.total} "
            f"{model} GPUs in {region.code} are not reserved; you asked for {gpus}."
        )
    raise ValidationError(message, code="no_capacity")


@atomic_retry
def reservation_create(
    *,
    organization: Organization,
    flavor: Flavor,
    region: Region,
    starts_at: datetime,
    ends_at: datetime,
    gpus: int | None = None,
    whole_nodes: int | None = None,
    project: Project | None = None,
    actor_id: int | None = None,
    now: datetime | None = None,
) -> Reservation:
    """Book a reservation, or raise ValidationError with why not (nothing written). The building
    block the reservation page, the API and courses' lab sessions share."""
    now = now or timezone.now()
    _request_check(
        flavor=flavor, region=region, gpus=gpus, whole_nodes=whole_nodes, starts_at=starts_at, ends_at=ends_at, now=now
    )
    if project is None:
        project = Project.objects.filter(organization=organization).order_by("created_at", "id").first()
        if project is None:
            raise ValidationError({"project": "Create a project in this organization first."})
    elif project.organization_id != organization.pk:
        raise ValidationError({"project": "That project belongs to another organization."})
    quote = _quote(flavor=flavor, region=region, gpus=gpus, whole_nodes=whole_nodes, now=now)
    _quota_ceiling_check(organization=organization, project=project, flavor=flavor, gpus=gpus, whole_nodes=whole_nodes)
    booking_lock(region=region, gpu_model_id=flavor.gpu_model_id)
    reservation_feasibility_check(
        flavor=flavor, region=region, starts_at=starts_at, ends_at=ends_at, gpus=gpus, whole_nodes=whole_nodes
    )
    reservation = Reservation.objects.create(
        organization=organization,
        project=project,
        flavor=flavor,
        region=region,
        gpu_model_id=flavor.gpu_model_id,
        gpus=gpus,
        whole_nodes=whole_nodes,
        starts_at=starts_at,
        ends_at=ends_at,
        state=R.SCHEDULED,
        reason=f"Booked for {when(starts_at)} to {when(ends_at)}",
        state_changed_at=now,
        units=quote.units,
        hourly_amount=quote.hourly_amount,
        currency=quote.currency,
        created_by_id=actor_id,
        created_at=now,
    )
    ReservationEvent.objects.create(
        reservation=reservation,
        from_state="",
        to_state=R.SCHEDULED,
        reason=reservation.reason,
        actor_id=actor_id,
        created_at=now,
    )
    reservations_changed_on_commit(organization_id=organization.pk)
    if reservation.starts_at <= now + ETA_HORIZON:
        # Through the module, so a test that records the tasks sees the booking's and the pass's.
        transaction.on_commit(lambda: reservation_hold.reservation_start_enqueue(reservation))
    return reservation


def reservation_request(*, access: OrgAccess, project: Project | None = None, **request) -> Reservation:
    """A member books for their organization (the page and the API): the role, then what billing
    asks of anyone who starts capacity (a way to pay, standing, hard caps: capacity.hooks), then the
    booking."""
    if not access.can_launch:
        raise PermissionDenied("Your role cannot reserve capacity; ask an owner or admin.")
    booking_checks_run(organization=access.organization, project=project)
    return reservation_create(organization=access.organization, project=project, actor_id=access.user_id, **request)


def reservation_cancel(*, access: OrgAccess, reservation_id: UUID, now: datetime | None = None) -> Reservation:
    """A member calls off their organization's reservation (the page and the API)."""
    if not access.can_launch:
        raise PermissionDenied("Your role cannot cancel reservations; ask an owner or admin.")
    return reservation_withdraw(
        organization=access.organization, reservation_id=reservation_id, actor_id=access.user_id, now=now
    )


@atomic_retry
def reservation_withdraw(
    *, organization: Organization, reservation_id: UUID, actor_id: int | None = None, now: datetime | None = None
) -> Reservation:
    """Call a reservation off before its capacity is held (scheduled, or short): nothing is charged
    and its window is free for others. A held (active) one is committed: it runs to its end and is
    billed for its window; the refusal says so. The building block courses call without a member."""
    now = now or timezone.now()
    reservation = reservation_locked_get(reservation_id=reservation_id, organization=organization)
    if reservation.state == R.ACTIVE:
        raise ReservationTransitionRefused(
            f"It has started and its capacity is held until {when(reservation.ends_at)}; it cannot be cancelled."
        )
    return reservation_transition(
        reservation=reservation, to_state=R.CANCELLED, reason="Cancelled", actor_id=actor_id, at=now
    )
