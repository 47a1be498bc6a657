"""Reads of metered usage: spend over a period, and the live running cost of an instance."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import DecimalField, ExpressionWrapper, F, Sum
from django.utils import timezone

from ..models import MeteredRun, UsageRecord
from ..money import SECONDS_PER_HOUR, usage_cost_exact
from ..services.metering import usage_cost_since

# A record's cost times 3600 (seconds × hourly price), summed in SQL; divide by SECONDS_PER_HOUR once.
USAGE_COST_HOURS = ExpressionWrapper(
    F("seconds") * F("hourly_amount"), output_field=DecimalField(max_digits=30, decimal_places=6)
)


def month_bounds(at: datetime) -> tuple[datetime, datetime]:
    """[first instant of `at`'s month, first instant of the next month), in the current time zone."""
    start = timezone.localtime(at).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start, (start + timedelta(days=32)).replace(day=1)


def usage_spend_get(
    *,
    organization_id: int,
    start: datetime,
    end: datetime,
    project_id: int | None = None,
    now: datetime | None = None,
) -> Decimal:
    """Unrounded cost of usage in [start, end): the records whose period starts in it, plus the
    seconds of open runs in it not yet cut into records (at most the hour running now, more only
    until the next meter pass). Those count where each second falls, as the records cut at hour
    boundaries will count them, so the figure is the same before and after a pass even in the
    seconds after a month starts. Corrections included."""
    now = now or timezone.now()
    records = UsageRecord.objects.filter(organization_id=organization_id, period_start__gte=start, period_start__lt=end)
    runs = MeteredRun.objects.filter(organization_id=organization_id, ended_at__isnull=True)
    if project_id is not None:
        records = records.filter(project_id=project_id)
        runs = runs.filter(project_id=project_id)
    cost_hours = records.aggregate(total=Sum(USAGE_COST_HOURS))["total"] or Decimal(0)
    spend = cost_hours / SECONDS_PER_HOUR
    if start <= now:  # no second of an open run lies after now
        spend += sum((usage_cost_since(run=run, now=now, start=start, end=end) for run in runs), Decimal(0))
    return spend


def run_elapsed_cost_get(*, run: MeteredRun, now: datetime) -> tuple[int, Decimal]:
    """(whole seconds, unrounded cost) of an open run so far: what a page shows ticking."""
    seconds = max(math.floor((now - run.started_at).total_seconds()), 0)
    return seconds, usage_cost_exact(seconds=seconds, hourly_amount=run.hourly_amount)


def instance_running_cost_get(*, instance_id, now: datetime | None = None) -> tuple[Decimal, int, MeteredRun | None]:
    """(cost so far, seconds so far, run) of the instance's current run; zeros when it is not running."""
    now = now or timezone.now()
    run = MeteredRun.objects.filter(instance_id=instance_id, ended_at__isnull=True).first()
    if run is None:
        return Decimal(0), 0, None
    seconds, cost = run_elapsed_cost_get(run=run, now=now)
    return cost, seconds, run


def instance_usage_total_get(*, instance_id) -> tuple[int, Decimal]:
    """(seconds, unrounded cost) of every record of the instance, corrections included."""
    # The alias must not be "seconds": USAGE_COST_HOURS refers to the field of that name.
    totals = UsageRecord.objects.filter(instance_id=instance_id).aggregate(
        total_seconds=Sum("seconds"), cost=Sum(USAGE_COST_HOURS)
    )
    return totals["total_seconds"] or 0, (totals["cost"] or Decimal(0)) / SECONDS_PER_HOUR
