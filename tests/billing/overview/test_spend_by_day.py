"""Spend per day of the month: one bar per day so far, adding up to the month's usage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from apps.billing.selectors.daily import spend_by_day_list
from apps.billing.selectors.usage import usage_spend_get
from apps.billing.services.metering import usage_run_meter
from tests.factories.billing import BillingAccountFactory, InstanceFactory, run_open, run_record

pytestmark = pytest.mark.django_db
OCT = datetime(2025, 10, 1, tzinfo=UTC)
NOW = OCT + timedelta(days=9, hours=6, seconds=12.5)


def test_days_add_up_to_the_month_and_land_on_the_day_they_started():
    # Given September usage, October usage on days 2 and 4 (one metered up to midnight) and a
    # running instance with seconds not yet cut into records
    account = BillingAccountFactory()
    org = account.organization
    a, b = InstanceFactory(organization=org), InstanceFactory(organization=org, state="running")
    run_record(instance=a, started_at=OCT - timedelta(days=3), ended_at=OCT - timedelta(days=3, hours=-1),
               hourly_amount="9.00")
    run_record(instance=a, started_at=OCT + timedelta(days=1, hours=3), ended_at=OCT + timedelta(days=1, hours=4),
               hourly_amount="3.60")  # $3.60 on Oct 2
    run = run_open(instance=b, started_at=OCT + timedelta(days=3, hours=23, minutes=30), hourly_amount="1.20")
    usage_run_meter(run_id=run.pk, now=OCT + timedelta(days=4))  # $0.60 on Oct 4, the rest uncut

    # When the days are read
    days = spend_by_day_list(organization_id=org.pk, now=NOW)

    # Then every day from the 1st to today is there, September is not, and they add up
    assert [d.day.day for d in days] == list(range(1, 11))
    by_day = {d.day.day: d.amount for d in days}
    assert by_day[2] == Decimal("3.60") and by_day[4] == Decimal("0.60")
    assert by_day[5] > 0  # the uncut seconds since Oct 5 00:00 count on the day they start
    assert by_day[1] == by_day[3] == 0
    month = usage_spend_get(organization_id=org.pk, start=OCT, end=datetime(2025, 11, 1, tzinfo=UTC), now=NOW)
    assert sum(d.amount for d in days) == month


def test_the_days_are_one_aggregate_however_many_records(django_assert_num_queries):
    account = BillingAccountFactory()
    org = account.organization
    for n in range(6):
        run_record(instance=InstanceFactory(organization=org), started_at=OCT + timedelta(days=n),
                   ended_at=OCT + timedelta(days=n, minutes=5), hourly_amount="1.00")
    with django_assert_num_queries(2):  # the records by day, the open runs
        assert len(spend_by_day_list(organization_id=org.pk, now=NOW)) == 10
