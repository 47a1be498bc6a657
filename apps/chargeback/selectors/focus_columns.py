"""The columns of the FOCUS export (FinOps FOCUS 1.2, CostAndUsage) and how one row is written:
a usage row of an instance or a reservation at one unit price, or a credit row. The sources (the
invoices, the daily roll-up) are in selectors.focus; both write their rows with these.

Values are text (decimals as plain strings, times as ISO 8601 UTC with a Z) or None for null, so
the CSV and the JSON pages carry the same figures.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from django.conf import settings

from apps.accounts.models import Organization, Project
from apps.capacity.models import Reservation
from apps.capacity.selectors.availability import flavor_slice_milli
from apps.catalog.models import Flavor
from apps.instances.models import Instance

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
ADJUSTMENT_SERVICE = "Billing adjustments"
CREDIT_SERVICE = "Credits"  # ServiceName may not be null, even on a credit of the whole account


@dataclass(frozen=True)
class FocusSubject:
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


def focus_time(moment: datetime | date) -> str:
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


def instance_subject(instance: Instance) -> FocusSubject:
    flavor = instance.flavor
    offering = instance.offering
    # Effective labels: the project's, overlaid key by key by the instance's (the shared rule).
    tags = {**(instance.project.labels or {}), **(instance.labels or {})}
    return FocusSubject(
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


def reservation_subject(reservation: Reservation) -> FocusSubject:
    flavor = reservation.flavor
    offering = flavor.offering
    gpus = reservation.gpus if reservation.gpus is not None else reservation.units * max(flavor.gpu_count, 1)
    return FocusSubject(
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


def account_columns(organization: Organization, period: tuple[datetime, datetime]) -> dict[str, str | None]:
    provider = settings.SITE_NAME
    return {
        "BillingAccountId": organization.slug,
        "BillingAccountName": organization.name,
        "BillingPeriodStart": focus_time(period[0]),
        "BillingPeriodEnd": focus_time(period[1]),
        "ProviderName": provider,
        "PublisherName": provider,
        "InvoiceIssuerName": provider,
        "ServiceCategory": SERVICE_CATEGORY,
        "ServiceSubcategory": SERVICE_SUBCATEGORY,
    }


def usage_row(
    *,
    base: dict,
    subject: FocusSubject,
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
            "ChargePeriodStart": focus_time(charge_period[0]),
            "ChargePeriodEnd": focus_time(charge_period[1]),
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
            # Standard for reservations too: the quote is the flavor's list price when booked,
            # not a commitment discount (so no CommitmentDiscount* columns are claimed).
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


def credit_row(
    *, base: dict, amount: Decimal, currency: str, description: str, period, category: str = "Credit"
) -> dict[str, str | None]:
    """A credit line of an invoice: money off the whole account, so no project or resource. With
    category "Adjustment": a line billed with no instance or reservation behind it (made by hand),
    kept so the export still adds up to the invoice."""
    value = _dec(amount)
    zero = _dec(Decimal("0.00"))
    row = dict.fromkeys(FOCUS_COLUMNS)
    row.update(base)
    row.update(
        {
            "ChargePeriodStart": focus_time(period[0]),
            "ChargePeriodEnd": focus_time(period[1]),
            "BilledCost": value,
            "EffectiveCost": value,
            "ListCost": zero,
            "ContractedCost": zero,
            "BillingCurrency": currency,
            "PricingCurrencyEffectiveCost": value,
            "ChargeCategory": category,
            "ChargeDescription": description,
            "ChargeFrequency": "One-Time",
            "ServiceName": CREDIT_SERVICE if category == "Credit" else ADJUSTMENT_SERVICE,
        }
    )
    return _ascii_row(row)
