"""The organization billing overview: a live partial (websocket pushes on changes, and a short
htmx poll for the running cost that ticks between them)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render

from apps.accounts.roles import OrgAccess
from apps.accounts.selectors import organization_access_get
from portal.ui.charts import Series, chart_spec
from portal.ui.money import CURRENCY_SYMBOLS

from ..selectors.daily import DaySpend
from ..selectors.overview import billing_overview_get
from ..services.accounts import billing_account_get_or_create

OVERVIEW_PARTIAL = "billing/overview/partials/overview.html"
POLL_EVERY_S = 5


def billing_access_get(*, user, slug: str) -> OrgAccess:
    """404 for other tenants (organization_access_get); 403 for members whose role may not see billing."""
    access = organization_access_get(user=user, slug=slug)
    if not access.can_view_billing:
        raise PermissionDenied("Only owners, admins and billing members see this organization's billing.")
    return access


def spend_chart_spec(*, days: list[DaySpend], currency: str) -> dict:
    """The month's spend per day as bars (the chart partial, portal.ui.charts)."""
    return chart_spec(
        kind="bar",
        labels=[f"{d.day:%b} {d.day.day}" for d in days],
        series=[Series("Spend", [d.amount for d in days])] if any(d.amount for d in days) else [],
        unit=CURRENCY_SYMBOLS.get(currency.upper(), currency.upper()),
    )


def overview_context(access: OrgAccess) -> dict:
    account = billing_account_get_or_create(organization=access.organization)
    overview = billing_overview_get(access=access, account=account)
    return {
        **overview,
        "spend_chart": spend_chart_spec(days=overview["days"], currency=overview["currency"]),
        "poll_every_s": POLL_EVERY_S,
    }


@login_required
def billing_overview_page(request, slug: str):
    access = billing_access_get(user=request.user, slug=slug)
    template = OVERVIEW_PARTIAL if request.htmx else "billing/overview/overview.html"
    return render(request, template, overview_context(access))
