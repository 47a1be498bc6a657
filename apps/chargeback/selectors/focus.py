"""A month of one organization as rows of the FinOps FOCUS specification (version 1.2, the
CostAndUsage dataset), for finance tools that read FOCUS (the CSV and API exports).

Two sources, one shape:
- A month that is invoiced (its monthly invoice exists) is read from the invoices: one row per
  usage line (an instance at one unit price, or a reservation), BilledCost the line's amount, and
  one "Credit" row per credit line (negative). So the export adds up to the invoices to the cent.
  The invoices of a month are its monthly invoice and the threshold invoices made during it.
  A line's records from an earlier billing period (a late correction, which invoicing puts on the
  next invoice) become a row of their own with ChargeClass "Correction", its ChargePeriod theirs;
  the two rows' costs still add up to the line (the correction row takes the line's remainder).
- A month not invoiced yet is computed from the daily roll-up (UsageDay) with the invoice's cost
  rule: per (instance or reservation, unit price), seconds × price rounded once to the cent. No
  InvoiceId and no credits yet (credits are applied when the invoice is made).

Token usage (pay-per-token endpoints) has no rows yet: the token-endpoint issue (17) has not
landed. Its rows will be one per (API key, model, token kind, unit price) with PricingUnit
"Tokens"/ConsumedUnit "Tokens", added by a third source here beside `_invoiced_rows`/`_rollup_rows`.

The columns and how one row is written are in selectors.focus_columns.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db.models import BooleanField, Case, Max, Min, Q, Sum, Value, When

from apps.accounts.models import Organization
from apps.billing.models import (
    Invoice,
    InvoicedReservationCharge,
    InvoicedUsage,
    InvoiceKind,
    InvoiceLine,
    InvoiceLineKind,
)
from apps.billing.money import money_round, usage_cost
from apps.capacity.models import Reservation
from apps.instances.models import Instance

from ..models import UsageDay
from .focus_columns import (
    FOCUS_COLUMNS,
    FOCUS_VERSION,
    SECONDS_PER_HOUR,
    account_columns,
    credit_row,
    instance_subject,
    reservation_subject,
    usage_row,
)

__all__ = ["FOCUS_COLUMNS", "FOCUS_VERSION", "focus_is_invoiced", "focus_month_parse", "focus_rows"]


def _month_bounds(month: date) -> tuple[datetime, datetime]:
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = datetime(month.year + (month.month == 12), month.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


# --- an invoiced month ----------------------------------------------------------------------


def _month_invoices(*, organization_id: int, start: datetime, end: datetime) -> list[Invoice]:
    """The monthly invoice of the month and the threshold invoices made during it, oldest first;
    [] while the monthly invoice does not exist (the month is not closed)."""
    invoices = list(
        Invoice.objects.filter(account_id=organization_id)
        .filter(
            Q(kind=InvoiceKind.MONTHLY, period_start=start)
            | Q(kind=InvoiceKind.THRESHOLD, created_at__gte=start, created_at__lt=end)
        )
        .order_by("created_at", "id")
    )
    return invoices if any(i.kind == InvoiceKind.MONTHLY for i in invoices) else []


def _late_usage(invoices: list[Invoice]) -> dict[int, dict]:
    """Per usage line: its seconds from records of an earlier billing period than its invoice's
    (late corrections) and the span of those records, and the span of the others. One query."""
    starts = {invoice.pk: invoice.period_start for invoice in invoices}
    late = Q()
    for invoice_id, start in starts.items():
        late |= Q(line__invoice_id=invoice_id, record__period_start__lt=start)
    rows = (
        InvoicedUsage.objects.filter(line__invoice_id__in=starts)
        .annotate(late=Case(When(late, then=Value(True)), default=Value(False), output_field=BooleanField()))
        .values("line_id", "late")
        .annotate(seconds=Sum("record__seconds"), first=Min("record__period_start"), last=Max("record__period_end"))
    )
    spans: dict[int, dict] = defaultdict(dict)
    for row in rows:
        spans[row["line_id"]][row["late"]] = row
    return spans


def _invoiced_rows(*, organization: Organization, invoices: list[Invoice]) -> list[dict]:
    lines = list(
        InvoiceLine.objects.filter(invoice__in=invoices)
        .select_related(
            "instance__project",
            "instance__flavor__gpu_model",
            "instance__offering",
            "instance__region",
        )
        .order_by("invoice_id", "id")
    )
    reservations = {
        tie.line_id: tie.charge.reservation
        for tie in InvoicedReservationCharge.objects.filter(
            line__in=[line for line in lines if not line.instance_id]
        ).select_related(
            "charge__reservation__project",
            "charge__reservation__flavor__offering",
            "charge__reservation__flavor__gpu_model",
            "charge__reservation__region",
            "charge__reservation__gpu_model",
        )
    }
    charge_spans = {
        row["line_id"]: row
        for row in InvoicedReservationCharge.objects.filter(line_id__in=reservations)
        .values("line_id")
        .annotate(first=Min("charge__period_start"), last=Max("charge__period_end"))
    }
    spans = _late_usage(invoices)
    by_id = {invoice.pk: invoice for invoice in invoices}
    rows = []
    for line in lines:
        invoice = by_id[line.invoice_id]
        period = (invoice.period_start, invoice.period_end)
        base = {**account_columns(organization, period), "InvoiceId": invoice.number}
        credit = line.kind == InvoiceLineKind.CREDIT
        reservation = reservations.get(line.pk)
        # A credit, or a line made by hand (no instance, no reservation behind it): billed, so
        # exported, as an Adjustment.
        if credit or (line.instance_id is None and reservation is None):
            rows.append(
                credit_row(
                    base=base,
                    amount=line.amount,
                    currency=invoice.currency,
                    description=line.description,
                    period=period,
                    category="Credit" if credit else "Adjustment",
                )
            )
            continue
        if line.instance_id is None:
            span = charge_spans[line.pk]
            rows.append(
                usage_row(
                    base=base,
                    subject=reservation_subject(reservation),
                    seconds=line.seconds,
                    hourly_amount=line.hourly_amount,
                    currency=invoice.currency,
                    cost=line.amount,
                    charge_period=(span["first"], span["last"]),
                )
            )
            continue
        subject = instance_subject(line.instance)
        parts = spans.get(line.pk, {})
        regular, late = parts.get(False), parts.get(True)
        if late is None:
            first = regular["first"] if regular else invoice.period_start
            last = regular["last"] if regular else invoice.period_end
            rows.append(
                usage_row(
                    base=base,
                    subject=subject,
                    seconds=line.seconds,
                    hourly_amount=line.hourly_amount,
                    currency=invoice.currency,
                    cost=line.amount,
                    charge_period=(first, last),
                )
            )
            continue
        # The line rounds its seconds once; the regular part is rounded alone and the correction
        # takes the remainder, so the two rows add up to the line's amount exactly.
        regular_seconds = regular["seconds"] if regular else 0
        regular_cost = usage_cost(seconds=regular_seconds, hourly_amount=line.hourly_amount, currency=invoice.currency)
        if regular:
            rows.append(
                usage_row(
                    base=base,
                    subject=subject,
                    seconds=regular_seconds,
                    hourly_amount=line.hourly_amount,
                    currency=invoice.currency,
                    cost=regular_cost,
                    charge_period=(regular["first"], regular["last"]),
                )
            )
        rows.append(
            usage_row(
                base=base,
                subject=subject,
                seconds=late["seconds"],
                hourly_amount=line.hourly_amount,
                currency=invoice.currency,
                cost=line.amount - regular_cost,
                charge_period=(late["first"], late["last"]),
                correction=True,
            )
        )
    return rows


# --- a month not invoiced yet: the roll-up ----------------------------------------------------


def _rollup_rows(*, organization: Organization, start: datetime, end: datetime) -> list[dict]:
    groups = list(
        UsageDay.objects.filter(organization_id=organization.pk, day__gte=start.date(), day__lt=end.date())
        .values("instance_id", "reservation_id", "hourly_amount", "currency")
        .annotate(
            seconds=Sum("seconds"),
            milli=Sum("allocated_milli_seconds"),
            first=Min("day"),
            last=Max("day"),
        )
        .order_by("instance_id", "reservation_id", "hourly_amount")
    )
    instances = {
        i.pk: i
        for i in Instance.objects.filter(pk__in={g["instance_id"] for g in groups if g["instance_id"]}).select_related(
            "project", "flavor__gpu_model", "offering", "region"
        )
    }
    reservations = {
        r.pk: r
        for r in Reservation.objects.filter(
            pk__in={g["reservation_id"] for g in groups if g["reservation_id"]}
        ).select_related("project", "flavor__offering", "flavor__gpu_model", "region", "gpu_model")
    }
    base = {**account_columns(organization, (start, end)), "InvoiceId": None}
    rows = []
    for group in groups:
        if group["instance_id"]:
            subject = instance_subject(instances[group["instance_id"]])
            milli = group["milli"]
        else:
            subject = reservation_subject(reservations[group["reservation_id"]])
            milli = None  # a reservation holds its GPUs whole, whatever the roll-up allocated
        last_day = group["last"]
        rows.append(
            usage_row(
                base=base,
                subject=subject,
                seconds=group["seconds"],
                hourly_amount=group["hourly_amount"],
                currency=group["currency"],
                cost=money_round(
                    Decimal(group["seconds"]) * group["hourly_amount"] / SECONDS_PER_HOUR, group["currency"]
                ),
                charge_period=(group["first"], min(_next_day(last_day), end)),
                gpu_milli_seconds=milli,
            )
        )
    return rows


def _next_day(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


def focus_rows(*, organization_id: int, month: date) -> list[dict]:
    """The FOCUS rows of the organization's calendar month `month` (any day of it): from its
    invoices once invoiced, else from the daily roll-up. Callers check the caller may see billing."""
    organization = Organization.objects.get(pk=organization_id)
    start, end = _month_bounds(month)
    invoices = _month_invoices(organization_id=organization_id, start=start, end=end)
    if invoices:
        return _invoiced_rows(organization=organization, invoices=invoices)
    return _rollup_rows(organization=organization, start=start, end=end)


def focus_is_invoiced(*, organization_id: int, month: date) -> bool:
    """Whether `month`'s rows come from its invoices (True) or are an estimate from usage."""
    start, end = _month_bounds(month)
    return bool(_month_invoices(organization_id=organization_id, start=start, end=end))


_MONTH_TEXT = re.compile(r"^(\d{4})-(\d{2})$")


def focus_month_parse(text: str | None) -> date:
    """'YYYY-MM' → the month's first day, or a ValidationError keyed "month" saying why not."""
    match = _MONTH_TEXT.match((text or "").strip())
    if not match or not 1 <= int(match[2]) <= 12 or not 1 <= int(match[1]) < 9999:
        shown = (text or "")[:40]
        reason = "month is required: YYYY-MM." if not shown else f"“{shown}” is not a month (YYYY-MM)."
        raise ValidationError({"month": [reason]})
    return date(int(match[1]), int(match[2]), 1)
