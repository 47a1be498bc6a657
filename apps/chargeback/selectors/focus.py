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

Values are text (decimals as plain strings, times as ISO 8601 UTC with a Z) or None for null, so
the CSV and the JSON pages carry the same figures.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import BooleanField, Case, Max, Min, Q, Sum, Value, When

from apps.accounts.models import Organization, Project
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
from apps.capacity.selectors.availability import flavor_slice_milli
from apps.catalog.models import Flavor
from apps.instances.models import Instance

from ..models import UsageDay

FOCUS_VERSION = "1.2"

# The columns, in the order the CSV writes them. Everything FOCUS 1.2 requires of a provider
# with accounts, sub-accounts (projects), regions, resources, tags, unit prices and a public
# price list; CapacityReservationId/Status for reservations; PricingCurrency* (the same currency)
# so a tool that asks for them finds them.
FOCUS_COLUMNS = (
    "BillingAccountId",
    "BillingAccountName",
    "SubAccountId",
    "SubAccountName",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
    "ListUnitPrice",
    "ContractedUnitPrice",
    "BillingCurrency",
    "PricingCurrency",
    "PricingCurrencyListUnitPrice",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ConsumedQuantity",
    "ConsumedUnit",
    "PricingQuantity",
    "PricingUnit",
    "PricingCategory",
    "ProviderName",
    "PublisherName",
    "InvoiceIssuerName",
    "InvoiceId",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceSubcategory",
    "ServiceName",
    "SkuId",
    "SkuPriceId",
    "SkuMeter",
    "SkuPriceDetails",
    "Tags",
    "CapacityReservationId",
    "CapacityReservationStatus",
    "CommitmentDiscountStatus",
)

WHOLE_GPU_MILLI = 1000
SECONDS_PER_HOUR = Decimal(3600)
QUANTITY = Decimal("0.000001")  # quantities to a millionth: a GPU-second is 0.000278 GPU-hours
SERVICE_CATEGORY = "AI and Machine Learning"  # one of FOCUS 1.2's allowed ServiceCategory values
SERVICE_SUBCATEGORY = "AI Platforms"
RESERVATION_TYPE = "Capacity Reservation"
CREDIT_SERVICE = "Credits"  # ServiceName may not be null, even on a credit of the whole account


@dataclass(frozen=True)
class _Subject:
    """What a row is about: an instance or a reservation, with what its columns need."""

    resource_id: str
    resource_name: str
    resource_type: str
    project: Project
    flavor: Flavor
    region_code: str
    region_name: str
    service_name: str
    sku_id: str
    gpu_milli: int  # thousandths of a GPU it holds (a whole 8-GPU flavor: 8000; MIG 1g of 7: 142)
    tags: dict[str, str]
    reservation_id: str | None
    is_reservation: bool
    description: str


def _month_bounds(month: date) -> tuple[datetime, datetime]:
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = datetime(month.year + (month.month == 12), month.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def _ts(moment: datetime | date) -> str:
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


# FOCUS 1.2's string handling, as the validator checks it, takes ASCII only. Names in the portal
# are written with "×" ("2 × H100") and may hold accents, so text columns are spelled in ASCII:
# the usual typographic signs by their ASCII twins, accented letters without their accents.
_ASCII = str.maketrans({"×": "x", "–": "-", "—": "-", "…": "...", "‘": "'", "’": "'", "“": '"', "”": '"', "•": "-"})


def _ascii(text: str) -> str:
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text.translate(_ASCII))
    return decomposed.encode("ascii", "ignore").decode()


def _ascii_row(row: dict[str, str | None]) -> dict[str, str | None]:
    return {key: _ascii(value) if isinstance(value, str) else value for key, value in row.items()}


def _dec(value: Decimal) -> str:
    return format(value, "f")


def _quantity(value: Decimal) -> str:
    return _dec(value.quantize(QUANTITY))


def _flavor_milli(flavor: Flavor) -> int:
    """Thousandths of a GPU one instance of `flavor` holds: its share × its GPUs (0 without GPUs)."""
    return (flavor_slice_milli(flavor) or 0) * max(flavor.gpu_count, 1)


def _instance_subject(instance: Instance) -> _Subject:
    flavor = instance.flavor
    offering = instance.offering
    # Effective labels: the project's, overlaid key by key by the instance's (the shared rule).
    tags = {**(instance.project.labels or {}), **(instance.labels or {})}
    return _Subject(
        resource_id=str(instance.pk),
        resource_name=instance.name,
        resource_type=offering.get_kind_display(),
        project=instance.project,
        flavor=flavor,
        region_code=instance.region.code,
        region_name=instance.region.name,
        service_name=offering.name,
        sku_id=f"{offering.slug}/{flavor.slug}",
        gpu_milli=_flavor_milli(flavor),
        tags=tags,
        reservation_id=str(instance.reservation_id) if instance.reservation_id else None,
        is_reservation=False,
        description=f"{instance.name}: {flavor.name} ({flavor.accelerator_label}) in {instance.region.code}",
    )


def _reservation_subject(reservation: Reservation) -> _Subject:
    flavor = reservation.flavor
    offering = flavor.offering
    gpus = reservation.gpus if reservation.gpus is not None else reservation.units * max(flavor.gpu_count, 1)
    return _Subject(
        resource_id=str(reservation.pk),
        resource_name=f"Reservation: {reservation.what}",
        resource_type=RESERVATION_TYPE,
        project=reservation.project,
        flavor=flavor,
        region_code=reservation.region.code,
        region_name=reservation.region.name,
        service_name=offering.name,
        sku_id=f"{offering.slug}/{flavor.slug}",
        gpu_milli=gpus * WHOLE_GPU_MILLI,
        tags=dict(reservation.project.labels or {}),
        reservation_id=str(reservation.pk),
        is_reservation=True,
        description=f"Reservation: {reservation.what} in {reservation.region.code}",
    )


def _account_columns(organization: Organization, period: tuple[datetime, datetime]) -> dict[str, str | None]:
    provider = settings.SITE_NAME
    return {
        "BillingAccountId": organization.slug,
        "BillingAccountName": organization.name,
        "BillingPeriodStart": _ts(period[0]),
        "BillingPeriodEnd": _ts(period[1]),
        "ProviderName": provider,
        "PublisherName": provider,
        "InvoiceIssuerName": provider,
        "ServiceCategory": SERVICE_CATEGORY,
        "ServiceSubcategory": SERVICE_SUBCATEGORY,
    }


def _usage_row(
    *,
    base: dict,
    subject: _Subject,
    seconds: int,
    hourly_amount: Decimal,
    currency: str,
    cost: Decimal,
    charge_period: tuple[datetime | date, datetime | date],
    gpu_milli_seconds: int | None = None,
    correction: bool = False,
) -> dict[str, str | None]:
    """One Usage row: `seconds` of `subject` at `hourly_amount`, costing `cost` (already rounded
    by the invoice's rule). ConsumedQuantity is GPU-hours by share (a MIG slice or a fraction
    counts by its thousandths of a GPU); PricingQuantity the instance-hours the price is per."""
    hours = Decimal(seconds) / SECONDS_PER_HOUR
    if gpu_milli_seconds is None:
        gpu_milli_seconds = seconds * subject.gpu_milli
    gpu_hours = Decimal(gpu_milli_seconds) / (SECONDS_PER_HOUR * WHOLE_GPU_MILLI)
    price = _dec(hourly_amount)
    amount = _dec(cost)
    flavor = subject.flavor
    details = {
        "x_GpuModel": flavor.gpu_model.name if flavor.gpu_model_id else None,
        "x_SliceKind": flavor.slice_kind,
        "x_GpuShare": _dec(Decimal(subject.gpu_milli) / WHOLE_GPU_MILLI),
    }
    return _ascii_row(
        {
            **base,
            "SubAccountId": f"{base['BillingAccountId']}/{subject.project.slug}",
            "SubAccountName": subject.project.name,
            "ChargePeriodStart": _ts(charge_period[0]),
            "ChargePeriodEnd": _ts(charge_period[1]),
            "BilledCost": amount,
            "EffectiveCost": amount,
            # Instances are charged the list price captured at launch, reservations the list price
            # quoted when booked: no negotiated discount, so list = contracted = billed.
            "ListCost": amount,
            "ContractedCost": amount,
            "ListUnitPrice": price,
            "ContractedUnitPrice": price,
            "BillingCurrency": currency,
            "PricingCurrency": currency,
            "PricingCurrencyListUnitPrice": price,
            "PricingCurrencyContractedUnitPrice": price,
            "PricingCurrencyEffectiveCost": amount,
            "ChargeCategory": "Usage",
            "ChargeClass": "Correction" if correction else None,
            "ChargeDescription": ("Correction: " if correction else "") + subject.description,
            # A reservation is charged for its held window, used or not: a recurring charge.
            "ChargeFrequency": "Recurring" if subject.is_reservation else "Usage-Based",
            "ConsumedQuantity": _quantity(gpu_hours),
            "ConsumedUnit": "GPU-Hours",
            "PricingQuantity": _quantity(hours),
            "PricingUnit": "Hours",
            "PricingCategory": "Standard",
            "RegionId": subject.region_code,
            "RegionName": subject.region_name,
            "ResourceId": subject.resource_id,
            "ResourceName": subject.resource_name,
            "ResourceType": subject.resource_type,
            "ServiceName": subject.service_name,
            "SkuId": subject.sku_id,
            "SkuPriceId": f"{subject.sku_id}@{subject.region_code}:{price}/h",
            "SkuMeter": "GPU reservation hours" if subject.is_reservation else "Instance hours",
            "SkuPriceDetails": json.dumps(details, sort_keys=True),
            "Tags": json.dumps(subject.tags, sort_keys=True),
            # The reservation's own row is its capacity's charge ("Unused": what its instances did
            # not use is in it); an instance launched into it runs at price 0 and is its "Used" part.
            "CapacityReservationId": subject.reservation_id,
            "CapacityReservationStatus": (
                ("Unused" if subject.is_reservation else "Used") if subject.reservation_id else None
            ),
            "CommitmentDiscountStatus": None,
        }
    )


def _credit_row(*, base: dict, amount: Decimal, currency: str, description: str, period) -> dict[str, str | None]:
    """A credit line of an invoice: money off the whole account, so no project or resource."""
    value = _dec(amount)
    zero = _dec(Decimal("0.00"))
    row = dict.fromkeys(FOCUS_COLUMNS)
    row.update(base)
    row.update(
        {
            "ChargePeriodStart": _ts(period[0]),
            "ChargePeriodEnd": _ts(period[1]),
            "BilledCost": value,
            "EffectiveCost": value,
            "ListCost": zero,
            "ContractedCost": zero,
            "BillingCurrency": currency,
            "PricingCurrencyEffectiveCost": value,
            "ChargeCategory": "Credit",
            "ChargeDescription": description,
            "ChargeFrequency": "One-Time",
            "ServiceName": CREDIT_SERVICE,
        }
    )
    return _ascii_row(row)


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
        base = {**_account_columns(organization, period), "InvoiceId": invoice.number}
        if line.kind == InvoiceLineKind.CREDIT:
            rows.append(
                _credit_row(
                    base=base,
                    amount=line.amount,
                    currency=invoice.currency,
                    description=line.description,
                    period=period,
                )
            )
            continue
        if line.instance_id is None:
            reservation = reservations.get(line.pk)
            if reservation is None:  # a hand-made line with nothing behind it: shown as it is billed
                continue
            span = charge_spans[line.pk]
            rows.append(
                _usage_row(
                    base=base,
                    subject=_reservation_subject(reservation),
                    seconds=line.seconds,
                    hourly_amount=line.hourly_amount,
                    currency=invoice.currency,
                    cost=line.amount,
                    charge_period=(span["first"], span["last"]),
                )
            )
            continue
        subject = _instance_subject(line.instance)
        parts = spans.get(line.pk, {})
        regular, late = parts.get(False), parts.get(True)
        if late is None:
            first = regular["first"] if regular else invoice.period_start
            last = regular["last"] if regular else invoice.period_end
            rows.append(
                _usage_row(
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
                _usage_row(
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
            _usage_row(
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
    base = {**_account_columns(organization, (start, end)), "InvoiceId": None}
    rows = []
    for group in groups:
        if group["instance_id"]:
            subject = _instance_subject(instances[group["instance_id"]])
            milli = group["milli"]
        else:
            subject = _reservation_subject(reservations[group["reservation_id"]])
            milli = None  # a reservation holds its GPUs whole, whatever the roll-up allocated
        last_day = group["last"]
        rows.append(
            _usage_row(
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
