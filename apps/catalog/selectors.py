"""Reads of the catalog. The catalog is public: nothing here is scoped by organization.

Current prices are chosen in the database (PostgreSQL DISTINCT ON), so a page costs the same
few queries however many offerings, flavors or past prices there are. Availability comes from
apps.capacity (what exists), a fixed number of queries per region shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from django.core.exceptions import ValidationError
from django.db.models import F, Prefetch, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from provisioning.drivers import form_launchable_kinds, launchable_kinds

from .models import (
    Flavor,
    GpuModel,
    Image,
    Offering,
    OfferingKind,
    Price,
    PriceUnit,
    Region,
    SliceKind,
)

DEFAULT_CURRENCY = "USD"
CURRENT_PRICES_ATTR = "current_prices"


# --- regions, GPU models, images ---------------------------------------------------------------


def regions_active_list() -> QuerySet[Region]:
    return Region.objects.filter(is_active=True)


def region_get_active(*, code: str, regions: Sequence[Region] | None = None) -> Region:
    """The active region `code`, or a ValidationError that names the choices.

    `regions`, the active regions when the caller has them already, saves the queries.
    """
    if regions is None:
        region = regions_active_list().filter(code=code).first()
    else:
        region = next((r for r in regions if r.code == code), None)
    if region is None:
        codes = regions_active_list().values_list("code", flat=True) if regions is None else [r.code for r in regions]
        known = ", ".join(codes) or "none yet"
        raise ValidationError({"region": f"Unknown region '{code}'. Available regions: {known}."})
    return region


def gpu_models_list() -> QuerySet[GpuModel]:
    return GpuModel.objects.all()


def images_list(*, kind: str | None = None) -> QuerySet[Image]:
    images = Image.objects.all()
    if kind:
        images = images.filter(offering_kinds__contains=[kind])
    return images


# --- prices ------------------------------------------------------------------------------------


def _prices_applicable(*, region: Region | None, currency: str, at: datetime) -> QuerySet[Price]:
    # Without a region only the all-regions rows apply: a regional row says nothing elsewhere.
    where = Q(region__isnull=True) if region is None else Q(region=region) | Q(region__isnull=True)
    return Price.objects.filter(where, currency=currency, valid_from__lte=at)


def price_current(
    *, flavor: Flavor, region: Region | None, unit: str, currency: str = DEFAULT_CURRENCY,
    at: datetime | None = None,
) -> Price | None:
    """The price of `flavor` per `unit` at `at` (default now) in `region`, or None if unpriced.

    A row for the region beats a row for all regions, even an older one: a regional price is an
    override of the list price. Among rows of the same scope the newest valid_from wins; rows
    that start after `at` are ignored.
    """
    at = at or timezone.now()
    return (
        _prices_applicable(region=region, currency=currency, at=at)
        .filter(flavor=flavor, unit=unit)
        .order_by(F("region_id").asc(nulls_last=True), "-valid_from", "-id")
        .first()
    )


def prices_current_prefetch(
    *, region: Region | None, currency: str = DEFAULT_CURRENCY, at: datetime | None = None,
    lookup: str = "prices",
) -> Prefetch:
    """A Prefetch that puts each flavor's current prices, one per unit, on `current_prices`.

    The same rule as price_current, applied to all flavors in one query with DISTINCT ON.
    """
    at = at or timezone.now()
    queryset = (
        _prices_applicable(region=region, currency=currency, at=at)
        .select_related("region")
        .order_by("flavor_id", "unit", F("region_id").asc(nulls_last=True), "-valid_from", "-id")
        .distinct("flavor_id", "unit")
    )
    return Prefetch(lookup, queryset=queryset, to_attr=CURRENT_PRICES_ATTR)


# --- offerings and flavors ---------------------------------------------------------------------


def offering_is_launchable(*, offering: Offering) -> bool:
    """True when some registered provisioning driver serves the offering's kind."""
    return offering.kind in launchable_kinds()


def flavors_list(
    *, region: Region | None = None, currency: str = DEFAULT_CURRENCY
) -> QuerySet[Flavor]:
    """Flavors of public offerings, with GPU model, offering and current prices loaded."""
    return (
        Flavor.objects.filter(offering__is_public=True)
        .select_related("offering", "gpu_model")
        .prefetch_related(prices_current_prefetch(region=region, currency=currency))
        .order_by("offering__sort_order", "offering__name", "sort_order", "id")
    )


def offering_flavors_prefetch(
    *, region: Region | None, currency: str = DEFAULT_CURRENCY
) -> Prefetch:
    flavors = Flavor.objects.select_related("gpu_model").prefetch_related(
        prices_current_prefetch(region=region, currency=currency)
    )
    return Prefetch("flavors", queryset=flavors)


def offerings_public_list(
    *, region: Region | None = None, currency: str = DEFAULT_CURRENCY, kind: str | None = None,
) -> QuerySet[Offering]:
    """Public offerings with their flavors (GPU model loaded) and current prices: 3 queries."""
    offerings = Offering.objects.filter(is_public=True).prefetch_related(
        offering_flavors_prefetch(region=region, currency=currency)
    )
    if kind:
        offerings = offerings.filter(kind=kind)
    return offerings


@dataclass(frozen=True)
class FlavorListing:
    flavor: Flavor
    prices: dict[str, Price]  # unit -> current price
    # How many could be launched now in the listing's region (summed over active regions when
    # none is chosen); None for flavors without a GPU, where capacity says nothing.
    available: int | None = None

    @property
    def hourly(self) -> Price | None:
        return self.prices.get(PriceUnit.HOUR)

    @property
    def input_tokens(self) -> Price | None:
        return self.prices.get(PriceUnit.MILLION_INPUT_TOKENS)

    @property
    def output_tokens(self) -> Price | None:
        return self.prices.get(PriceUnit.MILLION_OUTPUT_TOKENS)

    @property
    def hourly_per_gpu(self) -> Decimal | None:
        """What one GPU costs per hour in a multi-GPU flavor, for comparing sizes."""
        flavor = self.flavor
        if self.hourly is None or flavor.slice_kind != SliceKind.WHOLE or flavor.gpu_count < 2:
            return None
        return self.hourly.amount / flavor.gpu_count


@dataclass(frozen=True)
class OfferingListing:
    offering: Offering
    flavors: list[FlavorListing]
    launchable: bool
    region: Region | None = None  # the region of the prices and availability; None: all regions
    # Launchable from the portal's form; a launchable kind without it is launched through the API.
    form_launchable: bool = False

    @property
    def is_token_endpoint(self) -> bool:
        return self.offering.kind == OfferingKind.TOKEN_ENDPOINT


@dataclass(frozen=True)
class KindGroup:
    kind: str
    label: str
    offerings: list[OfferingListing]


@dataclass(frozen=True)
class Storefront:
    region: Region | None
    currency: str
    groups: list[KindGroup] = field(default_factory=list)


class AvailabilityProvider(Protocol):
    """How many more of each flavor could be placed in `region` right now: {flavor id: count}."""

    def __call__(self, *, flavors: Sequence[Flavor], region: Region) -> dict[int, int]: ...


# Availability is capacity's knowledge, and capacity is built on the catalog (its nodes and GPUs
# point at catalog regions and GPU models), so the catalog cannot import it. Rather than move the
# storefront (the catalog's own page, API and templates) up into capacity, capacity hands its
# count to the catalog at start-up (apps.capacity.apps): one function, one signature. Without it
# (capacity not installed) the storefront shows prices and no counts.
_availability_provider: AvailabilityProvider | None = None


def availability_provider_set(provider: AvailabilityProvider | None) -> None:
    global _availability_provider
    _availability_provider = provider


def flavors_availability_get(
    *, flavors: Iterable[Flavor], regions: Iterable[Region]
) -> dict[int, int]:
    """How many of each GPU flavor could be launched now, summed over `regions`.

    Capacity's count per region (a fixed few queries each); flavors without a GPU are left out.
    """
    gpu_flavors = [f for f in flavors if f.slice_kind != SliceKind.NONE]
    provider = _availability_provider
    if provider is None:
        return {}
    totals: dict[int, int] = {f.pk: 0 for f in gpu_flavors}
    if not gpu_flavors:
        return totals
    for region in regions:
        for flavor_id, count in provider(flavors=gpu_flavors, region=region).items():
            totals[flavor_id] = totals.get(flavor_id, 0) + count
    return totals


def _availability_regions(
    *, region: Region | None, regions: Sequence[Region] | None
) -> Sequence[Region]:
    if region is not None:
        return [region]
    return regions if regions is not None else list(regions_active_list())


def _offering_listing(
    offering: Offering,
    launchable: frozenset[str],
    available: dict[int, int],
    region: Region | None,
    form_launchable: frozenset[str] = frozenset(),
) -> OfferingListing:
    flavors = [
        FlavorListing(
            flavor=f, prices={p.unit: p for p in getattr(f, CURRENT_PRICES_ATTR)}, available=available.get(f.pk)
        )
        for f in offering.flavors.all()
    ]
    return OfferingListing(
        offering=offering,
        flavors=flavors,
        launchable=offering.kind in launchable,
        region=region,
        form_launchable=offering.kind in form_launchable,
    )


def storefront_list(
    *, region_code: str | None, currency: str = DEFAULT_CURRENCY, regions: Sequence[Region] | None = None
) -> Storefront:
    """Public offerings grouped by kind (in OfferingKind's order) with flavors, prices and
    availability.

    Without a region the all-regions list prices are shown, with availability summed over the
    active regions. `regions`: the active regions, when the caller has them already. An unknown
    or inactive region raises ValidationError with a message fit to show the user.
    """
    region = region_get_active(code=region_code, regions=regions) if region_code else None
    launchable, in_form = launchable_kinds(), form_launchable_kinds()
    offerings = list(offerings_public_list(region=region, currency=currency))
    available = flavors_availability_get(
        flavors=[f for offering in offerings for f in offering.flavors.all()],
        regions=_availability_regions(region=region, regions=regions),
    )
    by_kind: dict[str, list[OfferingListing]] = {}
    for offering in offerings:
        listing = _offering_listing(offering, launchable, available, region, in_form)
        by_kind.setdefault(offering.kind, []).append(listing)
    groups = [
        KindGroup(kind=kind.value, label=kind.label, offerings=by_kind[kind.value])
        for kind in OfferingKind
        if kind.value in by_kind
    ]
    return Storefront(region=region, currency=currency, groups=groups)


def offering_listing_get(
    *, slug: str, region_code: str | None, currency: str = DEFAULT_CURRENCY,
    regions: Sequence[Region] | None = None,
) -> OfferingListing:
    """One public offering with flavors, prices and availability; 404 for unknown or non-public
    slugs. `regions` as for storefront_list."""
    region = region_get_active(code=region_code, regions=regions) if region_code else None
    offering = offerings_public_list(region=region, currency=currency).filter(slug=slug).first()
    if offering is None:
        raise Http404("No such offering.")
    available = flavors_availability_get(
        flavors=offering.flavors.all(), regions=_availability_regions(region=region, regions=regions)
    )
    return _offering_listing(offering, launchable_kinds(), available, region, form_launchable_kinds())
