"""Reads of budgets: this month's spend against each budget of an organization, and what is
still unbilled (for prepaid credits). Spend is the same quantity usage_spend_get computes, taken
for every project of the organization in two queries, so a page with many budgets stays cheap."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Exists, F, OuterRef, Sum
from django.http import Http404
from django.utils import timezone

from apps.accounts.models import Organization

from ..models import BillingAccount, Budget, BudgetAlert, InvoicedUsage, MeteredRun, UsageRecord
from ..money import SECONDS_PER_HOUR, money_round
from ..services.metering import usage_cost_since
from .credits import credit_balance_get
from .usage import USAGE_COST_HOURS, month_bounds


@dataclass(frozen=True)
class BudgetStatus:
    """One budget and where this month's spend stands against it."""

    budget: Budget
    spend: Decimal  # unrounded
    percent: int  # whole percent used, floor; may exceed 100
    alerts: tuple[str, ...]  # thresholds already sent this month

    @property
    def scope_name(self) -> str:
        return self.budget.project.name if self.budget.project_id else "Whole organization"

    @property
    def bar_percent(self) -> int:
        return min(self.percent, 100)

    @property
    def level(self) -> str:
        """ok / warn (80 % or more) / over (100 % or more): what the bar's colour says."""
        if self.percent >= 100:
            return "over"
        return "warn" if self.percent >= 80 else "ok"

    @property
    def capped(self) -> bool:
        """Launches in this scope are refused: a hard cap that is reached."""
        return self.budget.hard_cap and self.percent >= 100

    @property
    def spend_display(self) -> Decimal:
        return money_round(self.spend, self.budget.currency)


def month_spend_by_project_get(*, organization_id: int, now: datetime | None = None) -> dict[int, Decimal]:
    """{project id: unrounded spend this month} for every project with usage, open runs included."""
    now = now or timezone.now()
    start, end = month_bounds(now)
    rows = (
        UsageRecord.objects.filter(organization_id=organization_id, period_start__gte=start, period_start__lt=end)
        .values("project_id")
        .annotate(cost=Sum(USAGE_COST_HOURS))
    )
    spend = {row["project_id"]: (row["cost"] or Decimal(0)) / SECONDS_PER_HOUR for row in rows}
    for run in MeteredRun.objects.filter(organization_id=organization_id, ended_at__isnull=True):
        cost = usage_cost_since(run=run, now=now, start=start, end=end)  # as usage_spend_get counts it
        spend[run.project_id] = spend.get(run.project_id, Decimal(0)) + cost
    return spend


def spend_unbilled_get(*, organization_id: int, now: datetime | None = None) -> Decimal:
    """Unrounded cost of usage not yet on any invoice, open runs included: what credits will be
    asked to cover next, whatever month it falls in."""
    now = now or timezone.now()
    billed = InvoicedUsage.objects.filter(record_id=OuterRef("pk"))
    cost_hours = (
        UsageRecord.objects.filter(organization_id=organization_id)
        .exclude(Exists(billed))
        .aggregate(total=Sum(USAGE_COST_HOURS))["total"]
    ) or Decimal(0)
    spend = cost_hours / SECONDS_PER_HOUR
    for run in MeteredRun.objects.filter(organization_id=organization_id, ended_at__isnull=True):
        spend += usage_cost_since(run=run, now=now)
    return spend


def credits_available_get(*, account: BillingAccount, at: datetime | None = None) -> Decimal:
    """Credits left once the usage not yet invoiced is taken off: the balance alone would let a
    prepaid account run on for the rest of the month after its credits are spent."""
    at = at or timezone.now()
    unbilled = spend_unbilled_get(organization_id=account.organization_id, now=at)
    return credit_balance_get(account=account, at=at) - unbilled


def budgets_list(*, organization: Organization):
    """The organization's budgets, the organization-wide one first."""
    return (
        Budget.objects.filter(organization=organization)
        .select_related("project")
        .order_by(F("project_id").asc(nulls_first=True), "id")  # the whole organization first
    )


def budget_get(*, organization: Organization, budget_id) -> Budget:
    try:
        return budgets_list(organization=organization).get(pk=budget_id)
    except (Budget.DoesNotExist, ValueError, TypeError) as exc:
        raise Http404("No such budget.") from exc


def _percent(spend: Decimal, amount: Decimal) -> int:
    return int((spend * 100 / amount).to_integral_value(rounding="ROUND_FLOOR")) if amount > 0 else 0


def budget_status_list(*, organization: Organization, now: datetime | None = None) -> list[BudgetStatus]:
    """Every budget of `organization` with this month's spend, % used and the alerts already sent.
    A fixed number of queries however many budgets there are."""
    now = now or timezone.now()
    by_project = month_spend_by_project_get(organization_id=organization.pk, now=now)
    budgets = list(budgets_list(organization=organization))
    month = month_bounds(now)[0].date()
    sent: dict[int, list[str]] = {}
    for budget_id, threshold in BudgetAlert.objects.filter(budget__in=budgets, month=month).values_list(
        "budget_id", "threshold"
    ):
        sent.setdefault(budget_id, []).append(threshold)
    statuses = []
    for budget in budgets:
        if budget.project_id:
            spend = by_project.get(budget.project_id, Decimal(0))
        else:
            spend = sum(by_project.values(), Decimal(0))
        statuses.append(
            BudgetStatus(
                budget=budget,
                spend=spend,
                percent=_percent(spend, budget.monthly_amount),
                alerts=tuple(sent.get(budget.pk, ())),
            )
        )
    return statuses
