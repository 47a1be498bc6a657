"""The organization billing overview: one read that gathers what the page shows, in a fixed
number of queries (running instances, budgets, the invoice preview's lines and the days of the
month come in one query each, however many)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from apps.accounts.roles import OrgAccess
from apps.instances.models import Instance

from ..models import BillingAccount, MeteredRun, PaymentStanding
from .budgets import BudgetStatus, budget_status_list
from .cards import payment_method_usable_get
from .credits import credit_balance_get
from .daily import spend_by_day_list
from .preview import invoice_preview_get
from .usage import month_bounds, run_elapsed_cost_get, usage_spend_get

STANDING_NOTICES = {
    PaymentStanding.GRACE: (
        "warn",
        "A payment failed. Launches still work during a short grace period; update the card or pay the open "
        "invoice to keep it that way.",
    ),
    PaymentStanding.BLOCKED: (
        "err",
        "A payment is overdue: new launches are blocked. Running instances will be stopped unless it is paid.",
    ),
    PaymentStanding.SUSPENDED: (
        "err",
        "A payment is overdue and the account is suspended: running instances were stopped. Pay the open invoice "
        "to launch again.",
    ),
}


@dataclass(frozen=True)
class RunningCost:
    """What one running instance has cost in its current run, and its rate."""

    instance: Instance
    seconds: int
    cost: Decimal  # unrounded
    hourly_amount: Decimal
    currency: str


def running_costs_list(*, organization_id: int, now: datetime | None = None) -> list[RunningCost]:
    """Every open metered run of the organization (one query), as instance_running_cost_get
    computes it for one instance."""
    now = now or timezone.now()
    runs = (
        MeteredRun.objects.filter(organization_id=organization_id, ended_at__isnull=True)
        .select_related("instance", "instance__flavor", "instance__project", "instance__owner")
        .order_by("started_at")
    )
    costs = []
    for run in runs:
        seconds, cost = run_elapsed_cost_get(run=run, now=now)
        costs.append(
            RunningCost(
                instance=run.instance,
                seconds=seconds,
                cost=cost,
                hourly_amount=run.hourly_amount,
                currency=run.currency,
            )
        )
    return costs


def billing_overview_get(*, access: OrgAccess, account: BillingAccount, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    organization = access.organization
    start, end = month_bounds(now)
    running = running_costs_list(organization_id=organization.pk, now=now)
    credits = credit_balance_get(account=account, at=now)
    budgets: list[BudgetStatus] = budget_status_list(organization=organization, now=now)
    notice = STANDING_NOTICES.get(account.standing)
    return {
        "access": access,
        "organization": organization,
        "account": account,
        "currency": account.currency,
        "now": now,
        "month_start": start,
        "month_spend": usage_spend_get(organization_id=organization.pk, start=start, end=end, now=now),
        "running": running,
        "running_hourly": sum((r.hourly_amount for r in running), Decimal(0)),
        "running_cost": sum((r.cost for r in running), Decimal(0)),
        "credits": credits,
        # What this month's invoice would be if it were made now, and the month's spend by day.
        "preview": invoice_preview_get(account=account, now=now),
        "days": spend_by_day_list(organization_id=organization.pk, now=now),
        "card": payment_method_usable_get(account=account, at=now),
        "budgets": budgets,
        "capped": [b for b in budgets if b.capped],
        "standing_level": notice[0] if notice else None,
        "standing_notice": notice[1] if notice else None,
    }
