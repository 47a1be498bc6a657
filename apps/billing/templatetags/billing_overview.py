"""Template helpers of the billing overview, the budgets page and the nav's Billing entry."""

from __future__ import annotations

from decimal import Decimal

from django import template
from django.urls import NoReverseMatch, reverse

from apps.accounts.roles import CAN_VIEW_BILLING

from ..money import money_format

register = template.Library()


@register.filter
def money(amount, currency: str = "USD") -> str:
    """`{{ amount|money:currency }}`: rounded to the currency's minor unit, with its symbol."""
    if amount is None or amount == "":
        return ""
    return money_format(Decimal(amount), currency)


@register.filter
def duration_short(seconds) -> str:
    """3725 → "1h 2m 5s"; 192 → "3m 12s"."""
    seconds = max(int(seconds or 0), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


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
