"""Reservations: whole GPUs or whole nodes of a GPU model in a region, promised for a future
window, and held as a gang allocation (holder "reservation:<id>") from its start to its end.

Booking (`reservation_create`) answers at once: a request that cannot be met is refused with the
reason, and nothing is written. It fits when, at every instant of its window, it plus every booked
reservation overlapping that instant fits the region's fleet of that GPU model
(selectors.reservations). Two bookings for the same region and model are made one after the other
under a transaction-scoped advisory lock of that pair, so two that each fit alone but not
together can never both be booked; bookings of other pairs do not wait.

Holding (`reservations_due_run`, every ~30 s from Celery beat, plus one task at each start): a due
reservation takes its capacity with `allocation_gang_create`; if on-demand instances hold it, it
goes SHORT with the allocator's reason and is tried again on every pass until its window ends. At
its end the gang is given back. Both are idempotent: the reservation row is locked and its state
re-read first, so a pass and the start task racing hold it once.

One transition function (`_transition`): a compare-and-set on the state plus an event row.

Lock order (portal/db.py): the booking lock, then the reservation row, then what the allocator
takes (quota, GPU rows, placement lock, summary rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

from celery import signature
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from apps.accounts.models import Organization, Project
from apps.accounts.roles import OrgAccess
from apps.catalog.models import Flavor, PriceUnit, Region, SliceKind
from apps.catalog.selectors import price_current
from portal.db import atomic_retry

from ..errors import AllocationRefused
from ..hooks import booking_checks_run, reservation_end_run
from ..live_reservations import reservations_changed_on_commit
from ..models import (
    BOOKED_RESERVATION_STATES,
    LIVE_ALLOCATION_STATES,
    WHOLE_GPU_MILLI,
    Allocation,
    Quota,
    Reservation,
    ReservationEvent,
    ReservationState,
)
from ..selectors.reservations import fleet_capacity_get, reservations_overlapping, window_shortfall
from .allocations import allocation_gang_create, allocation_gang_release, allocation_release

R = ReservationState
MIN_WINDOW = timedelta(hours=1)
MAX_WINDOW = timedelta(days=90)
MAX_LEAD = timedelta(days=365)  # how far ahead a window may start
START_GRACE = timedelta(minutes=5)  # a window "starting now" may have begun a moment ago
MAX_COUNT = 4096
# Starts at most this far ahead get an ETA task; the periodic pass (as often) enqueues the rest.
ETA_HORIZON = timedelta(seconds=settings.CAPACITY_RESERVATIONS_EVERY_S)
# pg_advisory_xact_lock namespace for "a reservation of region × GPU model is being booked".
BOOKING_LOCK = 0x7265_7376  # "resv"

_TRANSITIONS: dict[str, frozenset[str]] = {
    R.SCHEDULED: frozenset({R.ACTIVE, R.SHORT, R.ENDED, R.CANCELLED}),
    R.SHORT: frozenset({R.ACTIVE, R.ENDED, R.CANCELLED}),
    R.ACTIVE: frozenset({R.ENDED, R.SHORT}),  # short: its hold was lost (a node down, then back)
    R.ENDED: frozenset(),
    R.CANCELLED: frozenset(),
}


def when(moment: datetime) -> str:
    """A moment as reasons spell it: UTC to the minute (reasons are stored, not localized)."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


class ReservationTransitionRefused(ValidationError):
    """The reservation is not in a state that allows the change (it moved meanwhile, or never could)."""


def _transition(
    *,
    reservation: Reservation,
    to_state: str,
    reason: str,
    actor_id: int | None = None,
    at: datetime | None = None,
    **fields,
) -> Reservation:
    """The one way a reservation changes state: compare-and-set from the state it was read in, plus
    an event row. Raises ReservationTransitionRefused when the row is no longer in that state or the
    change is not allowed from it."""
    from_state = reservation.state
    if to_state not in _TRANSITIONS[from_state]:
        raise ReservationTransitionRefused(
            f"A {reservation.get_state_display().lower()} reservation cannot become {R(to_state).label.lower()}."
        )
    at = at or timezone.now()
    reason = reason[:300]
    changed = Reservation.objects.filter(pk=reservation.pk, state=from_state).update(
        state=to_state, reason=reason, state_changed_at=at, **fields
    )
    if not changed:
        raise ReservationTransitionRefused("The reservation changed meanwhile; reload and try again.")
    ReservationEvent.objects.create(
        reservation=reservation,
        from_state=from_state,
        to_state=to_state,
        reason=reason,
        actor_id=actor_id,
        created_at=at,
    )
    reservation.state, reservation.reason, reservation.state_changed_at = to_state, reason, at
    reservations_changed_on_commit(organization_id=reservation.organization_id)
    for name, value in fields.items():
        setattr(reservation, name, value)
    return reservation


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
        transaction.on_commit(lambda: _start_enqueue(reservation))
    return reservation


def reservation_request(*, access: OrgAccess, project: Project | None = None, **request) -> Reservation:
    """A member books for their organization (the page and the API): the role, then what billing
    asks of anyone who starts capacity (a way to pay, standing, hard caps: capacity.hooks), then the
    booking."""
    if not access.can_launch:
        raise PermissionDenied("Your role cannot reserve capacity; ask an owner or admin.")
    booking_checks_run(organization=access.organization, project=project)
    return reservation_create(organization=access.organization, project=project, actor_id=access.user_id, **request)


# By name, as instances enqueue theirs: the task module imports this one.
START_TASK = "apps.capacity.tasks.reservation_start"


def _start_enqueue(reservation: Reservation) -> None:
    """Hold it at its exact start (an ETA task); the periodic pass holds it anyway if this is lost.
    Only for a start within ETA_HORIZON: a worker keeps an ETA task in memory until it is due,
    and the Redis broker hands an unacknowledged one out again after its visibility timeout, so a
    task weeks ahead would pile up copies. Later starts are enqueued by the pass that comes
    within the horizon of them."""
    signature(START_TASK, args=(str(reservation.pk),)).apply_async(eta=reservation.starts_at)


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
    reservation = _locked(reservation_id=reservation_id, organization=organization)
    if reservation.state == R.ACTIVE:
        raise ReservationTransitionRefused(
            f"It has started and its capacity is held until {when(reservation.ends_at)}; it cannot be cancelled."
        )
    return _transition(reservation=reservation, to_state=R.CANCELLED, reason="Cancelled", actor_id=actor_id, at=now)


def _locked(*, reservation_id: UUID, organization: Organization | None = None) -> Reservation:
    rows = Reservation.objects.select_for_update(no_key=True, of=("self",)).select_related(
        "organization", "project", "flavor__gpu_model", "region", "gpu_model"
    )
    if organization is not None:
        rows = rows.filter(organization=organization)
    reservation = rows.filter(pk=reservation_id).first()
    if reservation is None:
        raise Reservation.DoesNotExist(f"No reservation {reservation_id}.")
    return reservation


# --- holding its capacity for the window -----------------------------------------------------------


@atomic_retry
def reservation_start(*, reservation_id: UUID, now: datetime | None = None) -> Reservation:
    """Hold a due reservation's capacity (SCHEDULED or SHORT → ACTIVE), or mark it SHORT with the
    allocator's reason. Does nothing before its start or to a reservation that is not waiting;
    ends one whose window is over."""
    now = now or timezone.now()
    reservation = _locked(reservation_id=reservation_id)
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
            return _transition(reservation=reservation, to_state=R.SHORT, reason=reason, at=now)
        Reservation.objects.filter(pk=reservation.pk).update(reason=reason[:300])
        return reservation
    # On time, it is held from its start; held late (it was short), from now: billing charges from here.
    held_from = reservation.held_from or (reservation.starts_at if reservation.state == R.SCHEDULED else now)
    return _transition(
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
    return _transition(reservation=reservation, to_state=R.ENDED, reason=reason, at=now)


@atomic_retry
def reservation_end(*, reservation_id: UUID, now: datetime | None = None) -> Reservation:
    """Give back a reservation whose window is over. Does nothing earlier, or to one already done."""
    now = now or timezone.now()
    reservation = _locked(reservation_id=reservation_id)
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
    reservation = _locked(reservation_id=reservation_id)
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
    return _transition(
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
        _start_enqueue(reservation)
    return {"ended": ended, "started": started, "short": short}
