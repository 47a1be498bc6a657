"""The billing overview page: the upcoming invoice in words (never a negative amount), the
spend-per-day chart, and a query count that does not grow with instances or days."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.billing.selectors.usage import month_bounds
from apps.billing.services.accounts import billing_account_get_or_create
from apps.billing.services.credits import credit_grant_create
from tests.billing.budgets.spend import instance_running, spend_add
from tests.factories.billing import InstanceFactory, run_record

pytestmark = pytest.mark.django_db



def _page(client, org) -> str:
    response = client.get(f"/orgs/{org.slug}/billing/")
    assert response.status_code == 200
    return response.content.decode()


def test_usage_beyond_credits_is_to_be_charged_to_the_card(owner_client, org):
    # Given $0.43 of usage this month, no credits, a card payer
    instance = spend_add(organization=org, amount="0.43")

    html = _page(owner_client, org)

    # Then the preview says what happens in words, with no negative amount anywhere
    assert "$0.43 to be charged to your card" in html
    assert 'data-testid="credits-words">no credits' in html
    assert f'data-line="{instance.name}"' in html and 'data-testid="preview-total">$0.43' in html
    assert "\u2212$" not in html and "$-" not in html


def test_credits_that_cover_the_month_say_so_and_what_is_left(owner_client, org):
    credit_grant_create(account=billing_account_get_or_create(organization=org), kind="promotion",
                        amount=Decimal("12.43"), description="Welcome")
    spend_add(organization=org, amount="0.43")

    html = _page(owner_client, org)

    assert 'data-testid="preview-words">covered by credits' in html
    assert "$0.43 go to this month's invoice · $12.00 of credits left" in html
    assert "Paid from credits: Welcome" in html
    assert "\u2212$" not in html and "$-" not in html


def test_the_spend_per_day_chart_has_the_days_of_the_month(owner_client, org):
    spend_add(organization=org, amount="1.00")
    html = _page(owner_client, org)
    assert 'data-testid="chart-spend-per-day"' in html and 'id="chart-data-spend-per-day"' in html
    today = timezone.localtime(timezone.now()).day
    assert html.count("<tr data-day=") == today


def test_an_organization_without_usage_sees_no_data_and_nothing_to_pay(owner_client, org):
    html = _page(owner_client, org)
    assert "No data yet." in html and "No usage this month yet" in html
    assert 'data-testid="preview-words">nothing to pay so far' in html


def test_the_query_count_does_not_grow_with_instances_or_days(owner_client, org, django_assert_max_num_queries):
    instance_running(organization=org, hourly="1.00", since_s=5)
    spend_add(organization=org, amount="1.00")
    _page(owner_client, org)  # the account exists from here on
    with django_assert_max_num_queries(40) as first:
        _page(owner_client, org)
    now = timezone.now()
    start = month_bounds(now)[0]
    for n in range(6):
        instance_running(organization=org, hourly="2.00", since_s=30 + n)
        # usage on different days of the month (as many as have passed)
        day = start + timedelta(days=min(n, (now - start).days), minutes=1)
        run_record(instance=InstanceFactory(organization=org), started_at=day, ended_at=day + timedelta(seconds=90),
                   hourly_amount="3.00")
    with django_assert_max_num_queries(len(first.captured_queries)):
        html = _page(owner_client, org)
    assert html.count("<tr data-line=") == 14
