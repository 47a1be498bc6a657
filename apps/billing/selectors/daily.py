"""Spend per day of the current month, for the billing overview's chart.

A record counts on the day its period starts, as it counts in the month it starts; the meter cuts
records at UTC hour boundaries, so with days in UTC (TIME_ZONE) a record lies inside its day. The
days add up to `usage_spend_get` for the month: the records, plus the seconds of open runs not
yet cut, each counted on the day it falls in (the uncut part is the hour running now, so one day,
unless a pass is late across midnight; never before the month).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from ..models import MeteredRun, UsageRecord
from ..money import SECONDS_PER_HOUR
from ..services.metering import usage_cost_since
from .usage import USAGE_COST_HOURS, month_bounds


@dataclass(frozen=True)
class DaySpend:
    day: date
    amount: Decimal  # unrounded: a chart's bar, not something anyone pays


def spend_by_day_list(*, organization_id: int, now: datetime | None = None) -> list[DaySpend]:
    """Every day of this month up to today (days without usage at zero). Two queries: one
    aggregate of the month's records by day, one of the open runs."""
    now = now or timezone.now()
    start, end = month_bounds(now)
    tz = timezone.get_current_timezone()
    by_day = (
        UsageRecord.objects.filter(organization_id=organization_id, period_start__gte=start, period_start__lt=end)
        .annotate(day=TruncDate("period_start", tzinfo=tz))
        .values("day")
        .annotate(cost_hours=Sum(USAGE_COST_HOURS))
        .order_by("day")
    )
    spend: dict[date, Decimal] = {row["day"]: row["cost_hours"] / SECONDS_PER_HOUR for row in by_day}
    first, today = timezone.localtime(start, tz).date(), timezone.localtime(now, tz).date()
    for run in MeteredRun.objects.filter(organization_id=organization_id, ended_at__isnull=True):
        uncut_from = timezone.localtime(run.started_at + timedelta(seconds=run.metered_seconds), tz).date()
        day = max(uncut_from, first)
        while day <= today:
            day_start = datetime.combine(day, time(), tzinfo=tz)
            day_end = datetime.combine(day + timedelta(days=1), time(), tzinfo=tz)
            cost = usage_cost_since(run=run, now=now, start=max(day_start, start), end=min(day_end, end))
            spend[day] = spend.get(day, Decimal(0)) + cost
            day += timedelta(days=1)
    days = []
    day = first
    while day <= today:
        days.append(DaySpend(day, spend.get(day, Decimal(0))))
        day += timedelta(days=1)
    return days
