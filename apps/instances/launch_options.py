"""What the launch form may offer, read once per page: the flavors this cloud can launch, the
images that run their kind, every active region with its free count and hourly price for each
flavor, and why a choice cannot be taken now ("Sold out in eu-north-1").

A snapshot (capacity's counts read without locks): the form uses it to choose sensible defaults
and explain; the launch itself holds capacity in its own transaction and is the one that decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone

from apps.capacity.selectors.availability import flavors_availability_by_region
from apps.catalog.models import Flavor, Image, Price, PriceUnit, Region
from provisioning.drivers.registry import driver_for_kind, form_launchable_kinds


@dataclass(frozen=True)
class RegionChoice:
    region: Region
    available: int
    hourly: Price | None

    @property
    def disabled_reason(self) -> str | None:
        if self.hourly is None:
            return f"not priced in {self.region.code}"
        if self.available < 1:
            return f"sold out in {self.region.code}"
        return None


@dataclass(frozen=True)
class FlavorChoice:
    flavor: Flavor
    regions: list[RegionChoice] = field(default_factory=list)
    # Its kind is logged in to over SSH with keys chosen at launch (the driver's needs_ssh_keys).
    needs_ssh_keys: bool = False

    @property
    def available(self) -> int:
        return sum(r.available for r in self.regions if r.hourly is not None)

    @property
    def disabled_reason(self) -> str | None:
        if not self.flavor.gpu_model_id or self.flavor.gpu_count < 1:
            return "needs a GPU flavor"
        if not any(r.hourly is not None for r in self.regions):
            return "not priced in any region"
        if self.available < 1:
            return "sold out in every region"
        return None

    def region(self, code: str | None) -> RegionChoice | None:
        return next((r for r in self.regions if r.region.code == code), None)

    @property
    def best_region(self) -> RegionChoice | None:
        """The region to preselect: the most free, then the cheapest; None when nothing is free."""
        open_ = [r for r in self.regions if r.disabled_reason is None]
        return max(open_, key=lambda r: (r.available, -r.hourly.amount)) if open_ else None

    @property
    def list_price(self) -> Price | None:
        prices = [r.hourly for r in self.regions if r.hourly is not None]
        return min(prices, key=lambda p: p.amount) if prices else None


@dataclass(frozen=True)
class LaunchOptions:
    flavors: list[FlavorChoice]
    images: list[Image]
    regions: list[Region]

    def flavor(self, flavor_id) -> FlavorChoice | None:
        return next((f for f in self.flavors if str(f.flavor.pk) == str(flavor_id)), None)

    def default_flavor(self, *, has_ssh_keys: bool = True, offering: str | None = None) -> FlavorChoice | None:
        """The first flavor that can be launched somewhere now, else the first; of `offering` (a
        slug: the storefront card's Launch) when it has any. Someone without SSH keys is first
        offered one they can launch as they are (a notebook before a GPU instance), not a form
        that can only say "add a key first"."""
        flavors = [f for f in self.flavors if f.flavor.offering.slug == offering] or self.flavors
        open_ = [f for f in flavors if f.disabled_reason is None]
        if not has_ssh_keys:
            open_ = [f for f in open_ if not f.needs_ssh_keys] or open_
        return open_[0] if open_ else (flavors[0] if flavors else None)

    def images_for(self, choice: FlavorChoice | None) -> list[Image]:
        """The images that run the chosen flavor's kind (every image when none is chosen)."""
        if choice is None:
            return self.images
        return [i for i in self.images if i.applies_to(choice.flavor.offering.kind)]


def _placeable_kinds() -> set[str]:
    # A kind some driver serves and whose workloads the allocator can place (GPUs on one node).
    return {
        kind
        for kind in form_launchable_kinds()
        if driver_for_kind(kind).placement_needs().gpus_on_one_node
    }


def _hourly_prices(flavors: list[Flavor], currency: str) -> dict[tuple[int, int | None], Price]:
    """{(flavor id, region id or None): the current hourly price}; a regional row beats the list
    price, as catalog.selectors.price_current says, in one query."""
    rows = (
        Price.objects.filter(flavor__in=flavors, unit=PriceUnit.HOUR, currency=currency, valid_from__lte=timezone.now())
        .order_by("flavor_id", "region_id", "-valid_from", "-id")
        .distinct("flavor_id", "region_id")
    )
    return {(p.flavor_id, p.region_id): p for p in rows}


def launch_options_get(*, currency: str | None = None) -> LaunchOptions:
    """Everything the launch form offers, in a fixed few queries per region."""
    currency = currency or settings.BILLING["CURRENCY"]
    kinds = _placeable_kinds()
    flavors = list(
        Flavor.objects.filter(offering__kind__in=kinds, offering__is_public=True)
        .select_related("offering", "gpu_model")
        .order_by("offering__sort_order", "sort_order", "id")
    )
    regions = list(Region.objects.filter(is_active=True))
    counts = flavors_availability_by_region(flavors=flavors, regions=regions)
    prices = _hourly_prices(flavors, currency)
    choices = [
        FlavorChoice(
            flavor=flavor,
            regions=[
                RegionChoice(
                    region=region,
                    available=counts[region.pk].get(flavor.pk, 0),
                    hourly=prices.get((flavor.pk, region.pk)) or prices.get((flavor.pk, None)),
                )
                for region in regions
            ],
            needs_ssh_keys=driver_for_kind(flavor.offering.kind).needs_ssh_keys,
        )
        for flavor in flavors
    ]
    images = [i for i in Image.objects.all() if any(i.applies_to(kind) for kind in kinds)]
    return LaunchOptions(flavors=choices, images=images, regions=regions)
