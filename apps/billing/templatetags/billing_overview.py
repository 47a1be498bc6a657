"""Template helpers of the billing overview, the budgets page and the nav's Billing entry."""

from __future__ import annotations

from django import template
from django.urls import NoReverseMatch, reverse

from apps.accounts.roles import CAN_VIEW_BILLING

register = template.Library()


@register.filter
def can_view_billing(membership) -> bool:
    """For the nav: whether the current membership's role may see the billing pages."""
    return bool(membership) and getattr(membership, "role", None) in CAN_VIEW_BILLING


@register.simple_tag
def billing_url(name: str, slug: str) -> str:
    """The URL of a billing page, or "" while that page does not exist yet (pages of billing are
    built by several hands; a link that would 500 the whole page is worse than no link)."""
    try:
        return reverse(name, kwargs={"slug": slug})
    except NoReverseMatch:
        return ""
