"""The upcoming invoice, as it stands now: what the invoice builder would bill for this month if it
ran at this moment, to the cent.

It is the builder's own arithmetic on the builder's own records: the records no invoice holds yet
(`records_uninvoiced`, the monthly invoice's selection), plus the seconds of open runs not yet
cut into records (the meter writes only finished hours, so the hour running now is in none) as
the records cutting them will hold them (services.metering.run_unmetered_seconds); lines by
`invoice_lines_plan` (one per instance and unit price, rounded once); credits by
`credit_applications_plan` (soonest-expiring first, grants valid in the invoiced month). Only the
reading differs: records come summed per instance, price and project by the database (a month of
hourly records stays one row per line), which a line adds up the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Max, Min, Sum
from django.utils import timezone

from apps.instances.models import Instance

from ..models import BillingAccount, MeteredRun
from ..services.invoicing.build import invoice_lines_plan, records_uninvoiced
from ..services.invoicing.reservations import (
    ReservationLinePlan,
    reservation_charges_uninvoiced,
    reservation_lines_plan,
)
from ..services.metering import run_unmetered_seconds
from .credits import credit_applications_plan, credit_grants_usable
from .usage import month_bounds


@dataclass(frozen=True)
class PreviewLine:
    instance: Instance
    flavor_name: str
    seconds: int
    hourly_amount: Decimal
    amount: Decimal  # rounded, as the invoice line will be


@dataclass(frozen=True)
class PreviewCredit:
    description: str
    expires_at: datetime | None
    amount: Decimal


@dataclass(frozen=True)
class InvoicePreview:
    period_start: datetime
    period_end: datetime
    currency: str
    lines: list[PreviewLine]
    credits: list[PreviewCredit]
    subtotal: Decimal
    credits_applied: Decimal
    total: Decimal
    # Credits still valid now, less what this invoice will take from them.
    credits_left: Decimal
    # Reservations' charges, one line each (services/invoicing/reservations.py), after the instances.
    reservations: list[ReservationLinePlan] = field(default_factory=list)

    @property
    def to_pay(self) -> Decimal:
        return max(self.total, Decimal("0.00"))

    @property
    def covered_by_credits(self) -> bool:
        return self.total <= 0 < self.credits_applied


def _rows_uninvoiced(*, organization_id: int, before: datetime, now: datetime) -> list[tuple]:
    """Rows in the shape invoice_lines_plan reads (see build._rows), record ids left out: sums
    of the uninvoiced records per (instance, price, project), and one row per open run for
    its seconds not yet cut. Two queries, however many records and runs."""
    summed = (
        records_uninvoiced(organization_id=organization_id, before=before)
        .values("instance_id", "hourly_amount", "project_id")
        .annotate(total=Sum("seconds"), first=Min("period_start"), last=Max("period_end"))
        .order_by()
        .values_list("instance_id", "hourly_amount", "total", "project_id", "first", "last")
    )
    rows = [(None, *row) for row in summed]
    for run in MeteredRun.objects.filter(organization_id=organization_id, ended_at__isnull=True).order_by("pk"):
        seconds = run_unmetered_seconds(run=run, now=now)
        if seconds:
            start = run.started_at + timedelta(seconds=run.metered_seconds)
            rows.append((None, run.instance_id, run.hourly_amount, seconds, run.project_id, start, now))
    return rows


def invoice_preview_get(*, account: BillingAccount, now: datetime | None = None) -> InvoicePreview:
    """This month's invoice as invoice_monthly_create would build it with every second up to `now`
    written as records (as it will be once the month is over, or a stop closes the run)."""
    now = now or timezone.now()
    start, end = month_bounds(now)
    rows = _rows_uninvoiced(organization_id=account.pk, before=end, now=now)
    plan = invoice_lines_plan(rows=rows, currency=account.currency)
    charges = list(reservation_charges_uninvoiced(organization_id=account.pk, before=end))
    reserved = reservation_lines_plan(charges=charges, currency=account.currency)
    subtotal = sum((p.amount for p in [*plan, *reserved]), Decimal("0.00"))
    usable = credit_grants_usable(account=account, valid_after=start)
    credit_plan = credit_applications_plan(usable=usable, up_to=subtotal)
    applied = sum((take for _, take in credit_plan), Decimal("0.00"))
    taken = {grant.grant.pk: take for grant, take in credit_plan}
    # What is left afterwards, of grants still valid now (a grant that expired this month may
    # still pay this month's invoice, but nothing later).
    valid_now = [g for g in usable if g.grant.expires_at is None or g.grant.expires_at > now]
    left = sum((g.remaining - taken.get(g.grant.pk, 0) for g in valid_now), Decimal("0.00"))
    return InvoicePreview(
        period_start=start,
        period_end=end,
        currency=account.currency,
        lines=[
            PreviewLine(
                instance=p.instance,
                flavor_name=p.instance.flavor.name,
                seconds=p.group.seconds,
                hourly_amount=p.group.hourly_amount,
                amount=p.amount,
            )
            for p in plan
        ],
        credits=[PreviewCredit(g.grant.description, g.grant.expires_at, take) for g, take in credit_plan],
        subtotal=subtotal,
        credits_applied=applied,
        total=subtotal - applied,
        credits_left=left,
        reservations=reserved,
    )
