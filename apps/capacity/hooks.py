"""How apps above capacity take part in a booking without capacity importing them (the layers:
accounts → catalog → capacity → instances → billing; tests/portal/test_import_layers.py).

`booking_check_subscribe`: asked before a member's booking writes anything; refuses by raising
ValidationError with the reason. Billing registers its launch eligibility (a way to pay, standing,
hard caps) in its AppConfig.ready(): what is reserved is billed, so only who may launch may book.
A plain registry, as apps.instances.hooks is for launches.

`reservation_end_subscribe`: told, inside the transaction that ends a reservation and before its
capacity is given back, so that what runs on its GPUs (instances launched into it) is stopped
first. It runs after the reservation row is locked: it may lock instance rows and what comes after
them in portal/db.py's order, never what comes before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:  # types only
    from datetime import datetime

    from apps.accounts.models import Organization, Project

    from .models import Reservation


class BookingCheck(Protocol):
    def __call__(self, *, organization: Organization, project: Project | None) -> None: ...


class ReservationEndSubscriber(Protocol):
    def __call__(self, *, reservation: Reservation, at: datetime) -> None: ...


_booking_checks: list[BookingCheck] = []
_reservation_end: list[ReservationEndSubscriber] = []


def booking_check_subscribe(check: BookingCheck) -> BookingCheck:
    # ready() can run more than once in one process (tests that reload apps): never add twice.
    if check not in _booking_checks:
        _booking_checks.append(check)
    return check


def reservation_end_subscribe(subscriber: ReservationEndSubscriber) -> ReservationEndSubscriber:
    if subscriber not in _reservation_end:
        _reservation_end.append(subscriber)
    return subscriber


def subscriber_remove(subscriber: Callable) -> None:
    """Forget `subscriber` (tests)."""
    for registry in (_booking_checks, _reservation_end):
        if subscriber in registry:
            registry.remove(subscriber)


def reservation_end_run(*, reservation: Reservation, at: datetime) -> None:
    """Tell every subscriber that `reservation` (locked) ends now; one that raises rolls the end
    back, and the next pass tries again."""
    for subscriber in tuple(_reservation_end):
        subscriber(reservation=reservation, at=at)


def booking_checks_run(*, organization: Organization, project: Project | None) -> None:
    """Ask every booking check; the first that refuses raises. With none registered nothing may be
    booked: what is reserved must be billable, and billing is what registers the check."""
    if not _booking_checks:
        raise ImproperlyConfigured("No booking check is registered (is apps.billing installed?).")
    for check in _booking_checks:
        check(organization=organization, project=project)
