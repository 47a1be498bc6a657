"""Reservation charges on invoices: one usage line per reservation (instance empty), as an
instance's usage is one line per instance and price, rounded once; every charge tied to its line,
so the database bills a charge once. Read by the invoice builder (build.py)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.db.models import Exists, OuterRef, Q, QuerySet

from ...models import Invoice, InvoicedReservationCharge, InvoiceLine, InvoiceLineKind, ReservationCharge
from ...money import usage_cost, usage_cost_exact


def reservation_charges_uninvoiced(*, organization_id: int, before: datetime) -> QuerySet[ReservationCharge]:
    """Charges of the organization whose period starts before `before` that no line holds yet,
    each with its reservation (for the line's words): one query."""
    billed = InvoicedReservationCharge.objects.filter(charge_id=OuterRef("pk"))
    return (
        ReservationCharge.objects.filter(organization_id=organization_id, period_start__lt=before)
        .filter(~Exists(billed))
        .select_related("reservation__flavor", "reservation__region", "reservation__gpu_model")
        .order_by("period_start", "pk")
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


@dataclass(frozen=True)
class ReservationLinePlan:
    """One reservation's line on an invoice of some charges: what the builder writes and what the
    billing overview's preview shows, so the two agree to the cent."""

    charges: list[ReservationCharge]
    project_id: int
    description: str
    flavor_name: str
    seconds: int
    hourly_amount: Decimal
    amount: Decimal


def reservation_lines_plan(*, charges: list[ReservationCharge], currency: str) -> list[ReservationLinePlan]:
    """One line per reservation of `charges` (read with their reservations), in window order,
    rounded once."""
    by_reservation: dict[object, list[ReservationCharge]] = defaultdict(list)
    for charge in charges:
        by_reservation[charge.reservation_id].append(charge)
    plans = []
    for group in sorted(by_reservation.values(), key=lambda g: (g[0].reservation.starts_at, g[0].reservation_id)):
        reservation = group[0].reservation
        seconds = sum(c.seconds for c in group)
        hourly = group[0].hourly_amount
        plans.append(
            ReservationLinePlan(
                charges=group,
                project_id=group[0].project_id,
                description=(
                    f"Reservation: {reservation.what} in {reservation.region.code}, "
                    f"{_utc(min(c.period_start for c in group))} to {_utc(max(c.period_end for c in group))} UTC"
                )[:300],
                flavor_name=reservation.flavor.name[:120],
                seconds=seconds,
                hourly_amount=hourly,
                amount=usage_cost(seconds=seconds, hourly_amount=hourly, currency=currency),
            )
        )
    return plans


def reservation_lines_add(*, invoice: Invoice, charges: list[ReservationCharge]) -> list[InvoiceLine]:
    """Write the invoice's reservation lines and tie each charge to its line."""
    plans = reservation_lines_plan(charges=charges, currency=invoice.currency)
    lines = [
        InvoiceLine(
            invoice=invoice,
            kind=InvoiceLineKind.USAGE,
            instance=None,
            project_id=p.project_id,
            description=p.description,
            flavor_name=p.flavor_name,
            seconds=p.seconds,
            hourly_amount=p.hourly_amount,
            amount=p.amount,
        )
        for p in plans
    ]
    InvoiceLine.objects.bulk_create(lines)
    # A charge some other invoice already holds makes this INSERT fail and the whole invoice roll back.
    InvoicedReservationCharge.objects.bulk_create(
        [
            InvoicedReservationCharge(charge=c, line=line)
            for line, p in zip(lines, plans, strict=True)
            for c in p.charges
        ]
    )
    return lines
