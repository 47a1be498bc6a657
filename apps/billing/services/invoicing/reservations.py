"""Reservation charges on invoices: one usage line per reservation (instance empty), as an
instance's usage is one line per instance and price, rounded once; every charge tied to its line,
so the database bills a charge once. Read by the invoice builder (build.py)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

from django.db.models import Exists, OuterRef, Q, QuerySet

from ...models import Invoice, InvoicedReservationCharge, InvoiceLine, InvoiceLineKind, ReservationCharge
from ...money import usage_cost, usage_cost_exact


def reservation_charges_uninvoiced(*, organization_id: int, before: datetime) -> QuerySet[ReservationCharge]:
    """Charges of the organization whose period starts before `before` that no line holds yet."""
    billed = InvoicedReservationCharge.objects.filter(charge_id=OuterRef("pk"))
    return ReservationCharge.objects.filter(organization_id=organization_id, period_start__lt=before).filter(
        ~Exists(billed)
    )


def reservation_charges_exact(charges: list[ReservationCharge]) -> Decimal:
    """Unrounded total of `charges` (for the threshold check)."""
    return sum((usage_cost_exact(seconds=c.seconds, hourly_amount=c.hourly_amount) for c in charges), Decimal(0))


def organizations_with_charges(*, month_start: datetime, month_end: datetime) -> set[int]:
    """Organizations with uninvoiced charges that start in or before the month."""
    billed = InvoicedReservationCharge.objects.filter(charge_id=OuterRef("pk"))
    return set(
        ReservationCharge.objects.filter(Q(period_start__lt=month_end))
        .filter(~Exists(billed))
        .values_list("organization_id", flat=True)
        .distinct()
    )


def _utc(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M}"


def reservation_lines_add(*, invoice: Invoice, charges: list[ReservationCharge]) -> list[InvoiceLine]:
    """Write one line per reservation of `charges` (in window order) and tie each charge to its line."""
    if not charges:
        return []
    by_reservation: dict[object, list[ReservationCharge]] = defaultdict(list)
    for charge in charges:
        by_reservation[charge.reservation_id].append(charge)
    reservations = {
        c.reservation_id: c.reservation
        for c in ReservationCharge.objects.filter(pk__in=[c.pk for c in charges]).select_related(
            "reservation__flavor", "reservation__region", "reservation__gpu_model"
        )
    }
    lines, ties = [], []
    for reservation_id, group in sorted(by_reservation.items(), key=lambda kv: reservations[kv[0]].starts_at):
        reservation = reservations[reservation_id]
        seconds = sum(c.seconds for c in group)
        hourly = group[0].hourly_amount
        line = InvoiceLine(
            invoice=invoice,
            kind=InvoiceLineKind.USAGE,
            instance=None,
            project_id=group[0].project_id,
            description=(
                f"Reservation: {reservation.what} in {reservation.region.code}, "
                f"{_utc(min(c.period_start for c in group))} to {_utc(max(c.period_end for c in group))} UTC"
            )[:300],
            flavor_name=reservation.flavor.name[:120],
            seconds=seconds,
            hourly_amount=hourly,
            amount=usage_cost(seconds=seconds, hourly_amount=hourly, currency=invoice.currency),
        )
        lines.append(line)
        ties.extend((line, c) for c in group)
    InvoiceLine.objects.bulk_create(lines)
    # A charge some other invoice already holds makes this INSERT fail and the whole invoice roll back.
    InvoicedReservationCharge.objects.bulk_create([InvoicedReservationCharge(charge=c, line=line) for line, c in ties])
    return lines
