"""The budgets API: set, list with the month's spend, remove; 4xx JSON with a reason for bad
input; roles and tenancy as on the pages."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.accounts.models import Project
from apps.billing.models import Budget
from tests.billing.budgets.spend import spend_add
from tests.factories.accounts import MembershipFactory, OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_set_list_and_remove_budgets(api_client, user, org):
    research = Project.objects.create(organization=org, name="Research", slug="research")
    spend_add(organization=org, amount="2.50", project=research)
    api_client.force_login(user)
    url = f"/api/v1/organizations/{org.slug}/budgets/"

    created = api_client.post(url, {"project": "research", "monthly_amount": "10", "hard_cap": True}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["project"] == "research" and body["monthly_amount"] == "10.00" and body["spend"] == "2.50"
    assert body["percent"] == 25 and body["hard_cap"] is True and body["capped"] is False

    api_client.post(url, {"monthly_amount": "100"}, format="json")
    listed = api_client.get(url).json()
    assert [(b["project"], b["monthly_amount"]) for b in listed] == [(None, "100.00"), ("research", "10.00")]

    assert api_client.delete(f"{url}{body['id']}/").status_code == 204
    assert not Budget.objects.filter(project=research).exists()


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"monthly_amount": "-1"}, "monthly_amount"),
        ({"monthly_amount": "ten"}, "monthly_amount"),
        ({"monthly_amount": "10", "currency": "EUR"}, "currency"),
        ({}, "monthly_amount"),
    ],
)
def test_bad_input_is_400_with_the_reason(api_client, user, org, payload, field):
    api_client.force_login(user)
    response = api_client.post(f"/api/v1/organizations/{org.slug}/budgets/", payload, format="json")
    assert response.status_code == 400 and field in response.json()
    assert not Budget.objects.exists()


def test_unknown_project_is_404(api_client, user, org):
    api_client.force_login(user)
    response = api_client.post(
        f"/api/v1/organizations/{org.slug}/budgets/", {"project": "nope", "monthly_amount": "5"}, format="json"
    )
    assert response.status_code == 404


def test_members_get_403_and_other_tenants_404(api_client, org):
    theirs = Budget.objects.create(organization=OrganizationFactory(), monthly_amount=Decimal("5"))
    member = MembershipFactory(organization=org, role="member").user
    api_client.force_login(member)
    assert api_client.get(f"/api/v1/organizations/{org.slug}/budgets/").status_code == 403
    stranger = UserFactory()
    api_client.force_login(stranger)
    assert api_client.get(f"/api/v1/organizations/{org.slug}/budgets/").status_code == 404
    owner = org.memberships.get(role="owner").user
    api_client.force_login(owner)
    assert api_client.delete(f"/api/v1/organizations/{org.slug}/budgets/{theirs.pk}/").status_code == 404
    assert Budget.objects.filter(pk=theirs.pk).exists()
