"""The public storefront: what can be bought, at what price, in which region. No login needed."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.shortcuts import render

from .models import Region
from .selectors import (
    images_list,
    offering_listing_get,
    regions_active_list,
    storefront_list,
)


def _region_error(error: ValidationError) -> str:
    return " ".join(error.message_dict.get("region", error.messages))


def storefront_context(*, region_code: str | None, regions: list[Region] | None = None) -> dict:
    """Everything the offerings partial renders; shared by the page and its live pushes.

    An unknown region is not an error page: the list prices are shown with a message.
    `regions` (the active ones) is passed when the caller has them already: it saves queries.
    """
    region_error = ""
    try:
        storefront = storefront_list(region_code=region_code, regions=regions)
    except ValidationError as error:
        region_error = _region_error(error)
        storefront = storefront_list(region_code=None, regions=regions)
    return {"storefront": storefront, "region_error": region_error}


def storefront(request):
    region_code = request.GET.get("region") or None
    if request.htmx:
        # htmx swaps only 2xx answers, so the message goes out with a 200 here.
        return render(request, "catalog/partials/offerings.html", storefront_context(region_code=region_code))
    # Fetched once: the region menu, the region lookup and the all-regions availability share it.
    regions = list(regions_active_list())
    context = storefront_context(region_code=region_code, regions=regions)
    context["regions"] = regions
    return render(
        request, "catalog/storefront.html", context, status=400 if context["region_error"] else 200
    )


def offering_detail(request, slug: str):
    region_code = request.GET.get("region") or None
    region_error = ""
    regions = list(regions_active_list())
    try:
        listing = offering_listing_get(slug=slug, region_code=region_code, regions=regions)
    except ValidationError as error:
        region_error = _region_error(error)
        listing = offering_listing_get(slug=slug, region_code=None, regions=regions)
    context = {
        "listing": listing,
        "region_code": "" if region_error else (region_code or ""),
        "region_error": region_error,
        "regions": regions,
        "images": images_list(kind=listing.offering.kind),
    }
    return render(
        request, "catalog/offering_detail.html", context, status=400 if region_error else 200
    )
