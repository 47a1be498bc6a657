"""The hourly grain: a meter pass writes only the clock hours of an open run that are over (the
first from its start to the next UTC hour, then whole hours); closing the run writes the rest, cut
at hour boundaries. What pages, budgets and the invoice preview show adds the seconds not yet
written, so mid-hour they still equal seconds × price exactly."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from apps.billing.models import Budget, BudgetAlert, MeteredRun, UsageRecord
from apps.billing.selectors.budgets import month_spend_by_project_get, spend_unbilled_get
from apps.billing.selectors.daily import spend_by_day_list
from apps.billing.selectors.preview import invoice_preview_get
from apps.billing.selectors.usage import instance_usage_total_get, usage_spend_get
from apps.billing.services.budgets import budget_enforce
from apps.billing.services.metering import (
    run_unmetered_seconds,
    usage_cost_since,
    usage_open_runs_meter,
    usage_run_close,
    usage_run_meter,
)
from apps.instances.models import InstanceState
from tests.factories.billing import BillingAccountFactory, InstanceFactory, run_open

pytestmark = pytest.mark.django_db
OCT, NOV = datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 11, 1, tzinfo=UTC)
T0 = datetime(2025, 10, 7, 10, 20, 5, tzinfo=UTC)  # a run's start, off the hour
HOURLY = Decimal("1.234567")  # a price whose cost per second never comes out round


def at(day: int, hour: int, minute: int = 0, second: float = 0) -> datetime:
    return datetime(2025, 10, day, hour, minute, tzinfo=UTC) + timedelta(seconds=second)


def records(run) -> list[tuple[datetime, datetime, int]]:
    rows = UsageRecord.objects.filter(run=run).order_by("period_start")
    return list(rows.values_list("period_start", "period_end", "seconds"))


def assert_cost(amount: Decimal, seconds: int) -> None:
    """`amount` is exactly `seconds` at HOURLY: compared as cost × 3600, which is seconds × price
    to the price's 6 decimals (one second more or less is 1.234567 off), whatever order the
    unrounded parts were divided and added in."""
    assert (amount * 3600).quantize(Decimal("0.000001")) == seconds * HOURLY


def assert_hourly(rows) -> None:
    """Each record inside one clock hour, none empty, contiguous."""
    for start, end, seconds in rows:
        assert seconds > 0 and end - start == timedelta(seconds=seconds)
        assert start.replace(minute=0, second=0, microsecond=0) == (end - timedelta(microseconds=1)).replace(
            minute=0, second=0, microsecond=0
        )
    assert all(a[1] == b[0] for a, b in zip(rows, rows[1:], strict=False))


@pytest.fixture
def running():
    """A running instance of a new organization, its run open since T0."""
    account = BillingAccountFactory()
    instance = InstanceFactory(organization=account.organization, state=InstanceState.RUNNING)
    run = run_open(instance=instance, started_at=T0, hourly_amount=HOURLY)
    return account, instance, run


def test_a_pass_writes_nothing_in_the_first_hour_then_each_finished_hour_once(running):
    _, _, run = running

    # Given passes within the run's first clock hour: nothing is written
    for moment in (T0, at(7, 10, 21), at(7, 10, 45, 30.5), at(7, 10, 59, 59.999)):
        assert usage_open_runs_meter(now=moment) == 0
    assert records(run) == []

    # When the hour boundary passes: that hour, from the start to 11:00, and only it
    assert usage_open_runs_meter(now=at(7, 11)) == 1
    assert records(run) == [(T0, at(7, 11), 2395)]
    # and passes later in the 11 o'clock hour (and the single-run path) write nothing more
    assert usage_open_runs_meter(now=at(7, 11, 0, 5)) == 0
    assert usage_run_meter(run_id=run.pk, now=at(7, 11, 59, 59.5)) == []

    # Then a late pass two boundaries on writes the two whole hours, not the one running now
    assert usage_open_runs_meter(now=at(7, 13, 0, 10)) == 2
    assert records(run)[1:] == [(at(7, 11), at(7, 12), 3600), (at(7, 12), at(7, 13), 3600)]
    run.refresh_from_db()
    assert run.metered_seconds == 2395 + 7200  # whole seconds since the start already written


def test_a_month_of_running_is_one_record_per_hour_and_none_crosses_the_month():
    # Given a run over a month boundary, met by a pass every 53 minutes (the beat runs every few
    # seconds; what it writes depends only on which hours are over) and closed 30 days later
    instance = InstanceFactory(organization=BillingAccountFactory().organization, state=InstanceState.RUNNING)
    start = datetime(2025, 10, 20, 17, 42, 13, tzinfo=UTC)
    end = start + timedelta(days=30, seconds=0.7)
    run = run_open(instance=instance, started_at=start, hourly_amount=HOURLY)
    moment = start
    while moment < end:
        usage_open_runs_meter(now=moment)
        moment += timedelta(minutes=53)
    usage_run_close(instance=instance, ended_at=end, reason="stopped")

    # Then one record per clock hour it touched: 720 hours of running in 721 records
    rows = records(run)
    assert len(rows) == 721
    assert_hourly(rows)
    assert sum(s for *_, s in rows) == 30 * 86400
    assert rows[0] == (start, datetime(2025, 10, 20, 18, tzinfo=UTC), 1067)
    assert rows[-1] == (datetime(2025, 11, 19, 17, tzinfo=UTC), end - timedelta(seconds=0.7), 2533)
    assert all(s == 3600 for *_, s in rows[1:-1])
    assert any(e == NOV for _, e, _ in rows)  # October's last record ends at the month boundary


def test_closing_writes_the_rest_cut_at_hour_boundaries(running):
    _, instance, run = running
    usage_open_runs_meter(now=at(7, 12, 30))  # 10:20:05-11:00 and 11:00-12:00

    run = usage_run_close(instance=instance, ended_at=at(7, 14, 45, 30.7), reason="stopped")

    rows = records(run)
    assert [s for *_, s in rows] == [2395, 3600, 3600, 3600, 2730]
    assert_hourly(rows)
    assert sum(s for *_, s in rows) == math.floor((run.ended_at - run.started_at).total_seconds())
    assert run_unmetered_seconds(run=run, now=at(8, 0)) == 0  # a closed run has nothing left to write


def test_closing_a_never_metered_run_across_a_month_boundary():
    instance = InstanceFactory(organization=BillingAccountFactory().organization, state=InstanceState.RUNNING)
    run = run_open(instance=instance, started_at=NOV - timedelta(minutes=30), hourly_amount=HOURLY)

    run = usage_run_close(instance=instance, ended_at=NOV + timedelta(hours=1, minutes=10), reason="stopped")

    assert [(s, e) for s, e, _ in records(run)] == [
        (NOV - timedelta(minutes=30), NOV),
        (NOV, NOV + timedelta(hours=1)),
        (NOV + timedelta(hours=1), NOV + timedelta(hours=1, minutes=10)),
    ]


@pytest.mark.parametrize("metered", [False, True], ids=["before-the-pass", "after-the-pass"])
def test_spend_mid_hour_is_the_seconds_times_the_price(running, metered):
    # Given a run since Oct 7 10:20:05, now mid-hour on Oct 9 (a pass at now, or none since 12:00)
    account, instance, run = running
    org_id = account.organization_id
    now = at(9, 15, 37, 42.6)
    usage_open_runs_meter(now=at(9, 12, 0, 3))
    if metered:
        usage_open_runs_meter(now=now)
    run.refresh_from_db()
    seconds = math.floor((now - T0).total_seconds())
    assert UsageRecord.objects.filter(run=run).count() == (53 if metered else 50)  # the hours that are over

    # Then every figure is the records plus the seconds not yet written: seconds × price exactly
    assert_cost(usage_spend_get(organization_id=org_id, start=OCT, end=NOV, now=now), seconds)
    [(project_id, by_project)] = month_spend_by_project_get(organization_id=org_id, now=now).items()
    assert project_id == instance.project_id
    assert_cost(by_project, seconds)
    assert_cost(spend_unbilled_get(organization_id=org_id, now=now), seconds)
    days = spend_by_day_list(organization_id=org_id, now=now)
    assert_cost(sum(d.amount for d in days), seconds)
    by_day = {d.day: d.amount for d in days}
    assert_cost(by_day[date(2025, 10, 8)], 86400)
    assert_cost(by_day[date(2025, 10, 9)], 15 * 3600 + 37 * 60 + 42)
    [line] = invoice_preview_get(account=account, now=now).lines
    assert line.seconds == seconds
    # the instance page's total (templatetags.billing_instances): its records plus the unwritten seconds
    total_seconds, total_cost = instance_usage_total_get(instance_id=instance.pk)
    assert total_seconds + run_unmetered_seconds(run=run, now=now) == seconds
    assert_cost(total_cost + usage_cost_since(run=run, now=now), seconds)


def test_in_the_seconds_after_a_month_starts_each_month_counts_its_own():
    # Given a run since Oct 31 22:10, its last pass at 23:10, and now 30.5 s into November
    account = BillingAccountFactory()
    org_id = account.organization_id
    instance = InstanceFactory(organization=account.organization, state=InstanceState.RUNNING)
    run = run_open(instance=instance, started_at=NOV - timedelta(minutes=110), hourly_amount=HOURLY)
    usage_open_runs_meter(now=NOV - timedelta(minutes=50))  # 22:10-23:00
    now = NOV + timedelta(seconds=30.5)
    december = datetime(2025, 12, 1, tzinfo=UTC)

    for _ in ("before the pass", "after it"):
        # Then October holds its 110 minutes and November its 30 seconds, pass or not
        assert_cost(usage_spend_get(organization_id=org_id, start=OCT, end=NOV, now=now), 6600)
        assert_cost(usage_spend_get(organization_id=org_id, start=NOV, end=december, now=now), 30)
        assert_cost(month_spend_by_project_get(organization_id=org_id, now=now)[instance.project_id], 30)
        [day] = spend_by_day_list(organization_id=org_id, now=now)
        assert day.day == date(2025, 11, 1)
        assert_cost(day.amount, 30)
        usage_open_runs_meter(now=now)
    assert [e for _, e, _ in records(run)] == [NOV - timedelta(hours=1), NOV]


def test_a_hard_cap_is_enforced_mid_hour_before_any_record_is_written(running):
    # Given a $5 hard cap and the run at $3600/h for 10 minutes: nothing written yet (its first hour)
    account, instance, run = running
    MeteredRun.objects.filter(pk=run.pk).update(hourly_amount=Decimal(3600))
    budget = Budget.objects.create(organization=account.organization, monthly_amount=Decimal("5.00"), hard_cap=True)
    now = T0 + timedelta(minutes=10)
    usage_open_runs_meter(now=now)
    assert not UsageRecord.objects.filter(run=run).exists()

    # When the budget is enforced
    budget_enforce(budget_id=budget.pk, now=now)

    # Then the unwritten seconds count: the cap is reached and the warning is out
    assert set(BudgetAlert.objects.filter(budget=budget).values_list("threshold", flat=True)) >= {"100", "cap_warning"}
