"""Billing of reservations: a reservation is charged for its whole held window, from when its
capacity was held (its start, or later if it was short) to its end, used or not, at the price
quoted when it was booked (Reservation.hourly_amount per unit × units). Exact Decimal; rounded
once, on the invoice line.

Capacity sits below billing and tells it nothing: this pass reads the reservations whose capacity
has been held and that have no charges yet, and writes their charges (Celery beat, every
BILLING["METER_EVERY_S"]; the invoice run calls it first too). The charges are cut at month
boundaries, so each is billed by the monthly invoice of its month, or, for a young account, by a
threshold invoice once it has begun. Idempotent: a reservation's charges are written once, in
one statement, and a unique (reservation, period_start) refuses a racing pass's copy.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from apps.capacity.models import Reservation

from ..models import ReservationCharge


def _next_month_start(moment: datetime) -> datetime:
    first = timezone.localtime(moment).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)


def reservation_charges_plan(*, reservation: Reservation) -> list[ReservationCharge]:
    """The charges of a held reservation: [held_from, ends_at) cut at month boundaries, whole
    seconds (a fraction of a second at the end is the customer's)."""
    start, end = reservation.held_from, reservation.ends_at
    if start is None or end <= start:
        return []
    hourly = reservation.hourly_amount * reservation.units
    charges = []
    while start < end:
        upto = min(end, _next_month_start(start))
        seconds = math.floor((upto - start).total_seconds())
        if seconds > 0:
            charges.append(
                ReservationCharge(
                    reservation_id=reservation.pk,
                    organization_id=reservation.organization_id,
                    project_id=reservation.project_id,
                    period_start=start,
                    period_end=upto,
                    seconds=seconds,
                    hourly_amount=hourly,
                    currency=reservation.currency,
                )
            )
        start = upto
    return charges


def reservation_charges_write() -> int:
    """Charge every reservation whose capacity has been held and that has no charges yet; returns
    how many charges were written. One transaction per reservation."""
    charged = ReservationCharge.objects.filter(reservation_id=OuterRef("pk"))
    due = Reservation.objects.filter(held_from__isnull=False).filter(~Exists(charged)).order_by("held_from")
    written = 0
    for reservation in due.only(
        "id", "organization_id", "project_id", "held_from", "ends_at", "hourly_amount", "units", "currency"
    ):
        with transaction.atomic():
            made = ReservationCharge.objects.bulk_create(
                reservation_charges_plan(reservation=reservation), ignore_conflicts=True
            )
        written += len(made)
    return written
