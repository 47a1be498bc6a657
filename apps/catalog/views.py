"""The public storefront: what can be bought, at what price, in which region. No login needed."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.shortcuts import render

from .selectors import (
    images_list,
    offering_listing_get,
    regions_active_list,
    storefront_list,
)


def _region_error(error: ValidationError) -> str:
    return " ".join(error.message_dict.get("region", error.messages))


def storefront_context(*, region_code: str | None) -> dict:
    """Everything the offerings partial renders; shared by the page and its live pushes.

    An unknown region is not an error page: the list prices are shown with a message.
    """
    region_error = ""
    try:
        storefront = storefront_list(region_code=region_code)
    except ValidationError as error:
        region_error = _region_error(error)
        storefront = storefront_list(region_code=None)
    return {"storefront": storefront, "region_error": region_error}


def storefront(request):
    context = storefront_context(region_code=request.GET.get("region") or None)
    if request.htmx:
        # htmx swaps only 2xx answers, so the message goes out with a 200 here.
        return render(request, "catalog/partials/offerings.html", context)
    context["regions"] = regions_active_list()
    return render(
        request, "catalog/storefront.html", context, status=400 if context["region_error"] else 200
    )


def offering_detail(request, slug: str):
    region_code = request.GET.get("region") or None
    region_error = ""
    try:
        listing = offering_listing_get(slug=slug, region_code=region_code)
    except ValidationError as error:
        region_error = _region_error(error)
        listing = offering_listing_get(slug=slug, region_code=None)
    context = {
        "listing": listing,
        "region_code": "" if region_error else (region_code or ""),
        "region_error": region_error,
        "regions": regions_active_list(),
        "images": images_list(kind=listing.offering.kind),
    }
    return render(
        request, "catalog/offering_detail.html", context, status=400 if region_error else 200
    )
