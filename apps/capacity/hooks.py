"""How apps above capacity take part in a booking without capacity importing them (the layers:
accounts → catalog → capacity → instances → billing; tests/portal/test_import_layers.py).

`booking_check_subscribe`: asked before a member's booking writes anything; refuses by raising
ValidationError with the reason. Billing registers its launch eligibility (a way to pay, standing,
hard caps) in its AppConfig.ready(): what is reserved is billed, so only who may launch may book.
A plain registry, as apps.instances.hooks is for launches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:  # types only
    from apps.accounts.models import Organization, Project


class BookingCheck(Protocol):
    def __call__(self, *, organization: Organization, project: Project | None) -> None: ...


_booking_checks: list[BookingCheck] = []


def booking_check_subscribe(check: BookingCheck) -> BookingCheck:
    # ready() can run more than once in one process (tests that reload apps): never add twice.
    if check not in _booking_checks:
        _booking_checks.append(check)
    return check


def subscriber_remove(subscriber: Callable) -> None:
    """Forget `subscriber` (tests)."""
    if subscriber in _booking_checks:
        _booking_checks.remove(subscriber)


def booking_checks_run(*, organization: Organization, project: Project | None) -> None:
    """Ask every booking check; the first that refuses raises. With none registered nothing may be
    booked: what is reserved must be billable, and billing is what registers the check."""
    if not _booking_checks:
        raise ImproperlyConfigured("No booking check is registered (is apps.billing installed?).")
    for check in _booking_checks:
        check(organization=organization, project=project)
