"""Invoice pages and API: the list, the detail with a line per instance, the printable page and
the CSV; only billing roles of the organization see them, other tenants get 404."""

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest

from apps.billing.services.credits import credit_grant_create
from apps.billing.services.invoicing import invoice_monthly_create
from tests.factories.accounts import MembershipFactory, UserFactory
from tests.factories.billing import BillingAccountFactory, InstanceFactory, run_record

from .conftest import OCT

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return UserFactory()


@pytest.fixture
def invoice(owner, django_capture_on_commit_callbacks):
    from tests.factories.accounts import OrganizationFactory

    account = BillingAccountFactory(organization=OrganizationFactory(owner=owner))
    a = InstanceFactory(organization=account.organization, name="trainer")
    b = InstanceFactory(organization=account.organization, name="notebook")
    run_record(instance=a, started_at=OCT, ended_at=OCT + timedelta(hours=6), hourly_amount="2.490000")
    run_record(instance=b, started_at=OCT, ended_at=OCT + timedelta(minutes=30), hourly_amount="2.100000")
    credit_grant_create(account=account, kind="promotion", amount=Decimal("5.00"), description="welcome")
    with django_capture_on_commit_callbacks(execute=False):
        return invoice_monthly_create(account=account, month_start=OCT)


def _url(name, invoice):
    from django.urls import reverse

    return reverse(name, kwargs={"slug": invoice.account.organization.slug, "invoice_id": invoice.pk})


def test_the_list_shows_the_organizations_invoices_in_few_queries(
    client, owner, invoice, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    from django.urls import reverse

    # more invoices do not mean more queries
    other_months = [OCT + timedelta(days=40 * n) for n in range(1, 6)]
    instance = invoice.lines.first().instance
    for start in other_months:
        run_record(instance=instance, started_at=start, ended_at=start + timedelta(hours=1), hourly_amount="1.00")
        with django_capture_on_commit_callbacks(execute=False):
            invoice_monthly_create(account=invoice.account, month_start=start)
    client.force_login(owner)

    with django_assert_max_num_queries(10):
        response = client.get(reverse("billing-invoices", kwargs={"slug": invoice.account.organization.slug}))

    assert response.status_code == 200
    body = response.content.decode()
    assert body.count('data-invoice="INV-') == 6 and invoice.number in body
    assert "$10.99" in body  # 14.94 + 1.05 − 5.00 credits


def test_the_detail_has_a_line_per_instance_credits_and_the_total(client, owner, invoice):
    client.force_login(owner)

    body = client.get(_url("billing-invoice-detail", invoice)).content.decode()

    assert 'data-line="trainer"' in body and 'data-line="notebook"' in body
    assert "21600" in body and "2.490000 USD" in body and "$14.94" in body
    assert "1800" in body and "$1.05" in body
    assert "$15.99" in body and "Credits applied" in body and "$10.99" in body
    assert "Draft" in body


def test_the_printable_page_has_print_styles_and_no_navigation(client, owner, invoice):
    client.force_login(owner)

    body = client.get(_url("billing-invoice-print", invoice)).content.decode()

    assert "@media print" in body and invoice.number in body and "$10.99" in body
    assert 'class="topbar"' not in body and "billing-tabs" not in body


def test_the_csv_has_the_lines_and_totals_as_plain_decimals(client, owner, invoice):
    client.force_login(owner)

    response = client.get(_url("billing-invoice-csv", invoice))

    assert response["Content-Type"].startswith("text/csv")
    assert f"{invoice.number}.csv" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    by_kind = {(r["kind"], r["instance"]): r for r in rows}
    assert by_kind[("usage", "trainer")]["seconds"] == "21600"
    assert by_kind[("usage", "trainer")]["unit_price_per_hour"] == "2.490000"
    assert by_kind[("usage", "trainer")]["amount"] == "14.94"
    assert by_kind[("credit", "Credits applied")]["amount"] == "-5.00"
    assert by_kind[("subtotal", "")]["amount"] == "15.99"
    assert by_kind[("credits_applied", "")]["amount"] == "5.00"
    assert by_kind[("total", "")]["amount"] == "10.99"


@pytest.mark.parametrize("name", ["billing-invoice-detail", "billing-invoice-print", "billing-invoice-csv"])
def test_another_tenants_invoice_is_not_found(client, invoice, name):
    from tests.factories.accounts import OrganizationFactory

    stranger = UserFactory()
    OrganizationFactory(owner=stranger)
    client.force_login(stranger)

    assert client.get(_url(name, invoice)).status_code == 404


def test_an_invoice_of_another_organization_is_not_found_through_ones_own(client, invoice):
    from django.urls import reverse

    from tests.factories.accounts import OrganizationFactory

    stranger = UserFactory()
    mine = OrganizationFactory(owner=stranger)
    client.force_login(stranger)

    url = reverse("billing-invoice-detail", kwargs={"slug": mine.slug, "invoice_id": invoice.pk})
    assert client.get(url).status_code == 404


@pytest.mark.parametrize(("role", "status"), [("billing", 200), ("admin", 200), ("member", 403), ("viewer", 403)])
def test_only_billing_roles_see_invoices(client, invoice, role, status):
    member = MembershipFactory(organization=invoice.account.organization, role=role).user
    client.force_login(member)

    assert client.get(_url("billing-invoice-detail", invoice)).status_code == status


def test_the_api_lists_and_details_invoices_with_decimal_strings(
    api_client, owner, invoice, django_assert_max_num_queries
):
    api_client.force_authenticate(owner)
    slug = invoice.account.organization.slug

    with django_assert_max_num_queries(6):
        listed = api_client.get(f"/api/v1/organizations/{slug}/invoices/")
    detail = api_client.get(f"/api/v1/organizations/{slug}/invoices/{invoice.pk}/")

    assert listed.status_code == 200
    results = listed.json()["results"] if isinstance(listed.json(), dict) else listed.json()
    assert [r["number"] for r in results] == [invoice.number]
    body = detail.json()
    assert (body["subtotal"], body["credits_applied"], body["total"]) == ("15.99", "5.00", "10.99")
    assert {(line["description"], line["amount"]) for line in body["lines"]} == {
        ("trainer", "14.94"),
        ("notebook", "1.05"),
        ("Credits applied", "-5.00"),
    }


def test_the_api_hides_other_tenants_invoices(api_client, invoice):
    from tests.factories.accounts import OrganizationFactory

    stranger = UserFactory()
    mine = OrganizationFactory(owner=stranger)
    api_client.force_authenticate(stranger)

    assert api_client.get(f"/api/v1/organizations/{mine.slug}/invoices/{invoice.pk}/").status_code == 404
    assert api_client.get(f"/api/v1/organizations/{invoice.account.organization.slug}/invoices/").status_code == 404
    assert api_client.get(f"/api/v1/organizations/{mine.slug}/invoices/").json() in (
        [],
        {"count": 0, "next": None, "previous": None, "results": []},
    )
