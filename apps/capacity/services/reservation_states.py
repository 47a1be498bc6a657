"""A reservation's state machine, shared by booking (services.reservations) and holding
(services.reservation_hold): the one transition function (a compare-and-set on the state plus an
event row), the row lock both take first, and how reasons spell a moment.

Lock order (portal/db.py): the booking lock, then the reservation row, then what the allocator
takes (quota, GPU rows, placement lock, summary rows).
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.accounts.models import Organization

from ..live_reservations import reservations_changed_on_commit
from ..models import Reservation, ReservationEvent, ReservationState

R = ReservationState

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


def reservation_transition(
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


def reservation_locked_get(*, reservation_id: UUID, organization: Organization | None = None) -> Reservation:
    """The reservation row, locked for this transaction (with what its start and end read); of
    `organization` when given. Reservation.DoesNotExist otherwise."""
    rows = Reservation.objects.select_for_update(no_key=True, of=("self",)).select_related(
        "organization", "project", "flavor__gpu_model", "region", "gpu_model"
    )
    if organization is not None:
        rows = rows.filter(organization=organization)
    reservation = rows.filter(pk=reservation_id).first()
    if reservation is None:
        raise Reservation.DoesNotExist(f"No reservation {reservation_id}.")
    return reservation
