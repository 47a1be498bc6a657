"""The invoice list on the UI toolkit's table: sorted, paginated, filtered by status and month with
the FilterSet the API uses (apps/billing/filters.py), in a number of queries that does not grow
with the rows, never another tenant's invoices; its socket renders with the page's query."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.billing.models import Invoice, InvoiceKind, InvoiceStatus
from tests.factories.accounts import MembershipFactory, OrganizationFactory, UserFactory
from tests.factories.billing import BillingAccountFactory
from tests.support.live import consumer_for, live_page_read

pytestmark = pytest.mark.django_db
ROW = re.compile(r'<tr[^>]*data-invoice="([^"]+)"')


def month(n: int) -> tuple[datetime, datetime]:
    """The n-th month from January 2024."""
    year, index = 2024 + n // 12, n % 12
    start = datetime(year, index + 1, 1, tzinfo=UTC)
    end = datetime(year + (index + 1) // 12, (index + 1) % 12 + 1, 1, tzinfo=UTC)
    return start, end


def invoices(
    account, count: int, *, first: int = 0, status=InvoiceStatus.PAID, kind=InvoiceKind.MONTHLY
) -> list[Invoice]:
    made = []
    for n in range(first, first + count):
        start, end = month(n)
        made.append(Invoice.objects.create(
            account=account, number=f"INV-{account.pk}-{kind[0]}{n:03d}", kind=kind, period_start=start,
            period_end=end, currency="USD", subtotal=Decimal("10.00") + n, total=Decimal("10.00") + n,
            status=status, idempotency_key=f"test-{account.pk}-{kind}-{n}",
        ))
    return made


@pytest.fixture
def owner():
    return UserFactory()


@pytest.fixture
def account(owner):
    return BillingAccountFactory(organization=OrganizationFactory(owner=owner))


@pytest.fixture
def browser(client, owner):
    client.force_login(owner)
    return client


def page_url(account) -> str:
    return f"/orgs/{account.organization.slug}/billing/invoices/"


def api_url(account) -> str:
    return f"/api/v1/organizations/{account.organization.slug}/invoices/"


def numbers(html: str) -> list[str]:
    return ROW.findall(html)


def test_the_list_sorts_by_total_and_paginates(browser, account):
    made = invoices(account, 30)

    first = browser.get(page_url(account), {"sort": "-total"}).content.decode()
    second = browser.get(page_url(account), {"sort": "-total", "page": 2}).content.decode()

    assert numbers(first) == [i.number for i in reversed(made)][:25]
    assert numbers(second) == [i.number for i in reversed(made)][25:]
    assert "$39.00" in first and 'data-testid="invoice-status"' in first and "Page 2 of 2" in second


@pytest.mark.parametrize(
    "query", [{}, {"status": "open"}, {"period": "2024-03"}, {"status": "paid", "period": "2024-02"}]
)
def test_filters_narrow_the_page_and_the_api_alike(browser, api_client, owner, account, query):
    paid = invoices(account, 3)  # Jan, Feb, Mar 2024
    opened = invoices(account, 1, first=2, status=InvoiceStatus.OPEN, kind=InvoiceKind.THRESHOLD)  # March again
    api_client.force_login(owner)

    on_page = set(numbers(browser.get(page_url(account), query).content.decode()))
    by_api = {item["number"] for item in api_client.get(api_url(account), query).json()["results"]}

    assert on_page == by_api == {
        (): {i.number for i in paid + opened},
        ("status",): {opened[0].number},
        ("period",): {paid[2].number, opened[0].number},
        ("period", "status"): {paid[1].number},
    }[tuple(sorted(query))]


@pytest.mark.parametrize("query", [{"status": "settled"}, {"period": "2024-13"}, {"period": "October"},
                                   {"period": "9999-12"}])
def test_a_bad_filter_is_a_400_in_the_api_and_a_message_on_the_page(browser, api_client, owner, account, query):
    invoices(account, 2)
    api_client.force_login(owner)

    answer = api_client.get(api_url(account), query)
    page = browser.get(page_url(account), query)

    field = next(iter(query))
    assert answer.status_code == 400 and field in answer.json()
    assert answer.json()[field][0].startswith(("Unknown status", "Give the period as a month"))
    html = page.content.decode()
    assert page.status_code == 200 and "This filter is ignored." in html and len(numbers(html)) == 2


def test_another_tenants_invoices_never_show(browser, api_client, owner, account):
    invoices(account, 1)
    other = BillingAccountFactory(organization=OrganizationFactory(owner=UserFactory()))
    theirs = invoices(other, 2)
    api_client.force_login(owner)

    for query in ({}, {"status": "paid"}, {"period": "2024-01"}):
        listed = numbers(browser.get(page_url(account), query).content.decode())
        by_api = [i["number"] for i in api_client.get(api_url(account), query).json()["results"]]
        assert not {i.number for i in theirs} & (set(listed) | set(by_api))
    assert browser.get(page_url(other)).status_code == 404


def test_a_member_without_billing_may_not_see_the_list(client, account):
    member = MembershipFactory(organization=account.organization, role="member").user
    client.force_login(member)
    assert client.get(page_url(account)).status_code == 403


def test_the_page_costs_the_same_queries_for_3_or_30_invoices(browser, account):
    invoices(account, 3)
    with CaptureQueriesContext(connection) as few:
        browser.get(page_url(account), {"status": "paid"})
    invoices(account, 27, first=3)
    with CaptureQueriesContext(connection) as many:
        html = browser.get(page_url(account), {"status": "paid"}).content.decode()
    assert len(numbers(html)) == 25
    assert len(few.captured_queries) == len(many.captured_queries)


def test_the_socket_renders_the_page_with_its_query(owner, account):
    made = invoices(account, 4)
    client = Client()
    client.force_login(owner)
    page = live_page_read(client, page_url(account) + "?period=2024-02&sort=number")

    consumer = consumer_for(page.announce(), user=owner)

    assert numbers(consumer.render()) == [made[1].number]
    assert consumer.version() == page.version
