"""API v1: an organization's cards and payment standing, for roles that see billing only."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.accounts.models import Role
from apps.billing.models import BillingAccount, PaymentStanding
from apps.billing.services.accounts import billing_account_get_or_create
from tests.factories.accounts import OrganizationFactory, UserFactory

from .test_cards import card_add

pytestmark = [pytest.mark.django_db]


def url(organization, what: str) -> str:
    return f"/api/v1/organizations/{organization.slug}/billing/{what}/"


def test_cards_are_listed_default_first(api_client, owner, organization, account, django_assert_max_num_queries):
    first = card_add(account)
    card_add(account)
    api_client.force_authenticate(owner)

    with django_assert_max_num_queries(6):
        response = api_client.get(url(organization, "cards"))

    assert response.status_code == 200
    body = response.json()
    assert [c["is_default"] for c in body] == [True, False]
    assert body[0] == {
        "id": first.pk,
        "brand": "visa",
        "last4": "4242",
        "exp_month": 12,
        "exp_year": 2034,
        "is_default": True,
        "expired": False,
        "created_at": body[0]["created_at"],
    }


def test_standing_says_where_the_account_stands(api_client, owner, organization, account):
    now = timezone.now()
    BillingAccount.objects.filter(pk=account.pk).update(standing=PaymentStanding.BLOCKED, past_due_since=now)
    api_client.force_authenticate(owner)

    body = api_client.get(url(organization, "standing")).json()

    assert body["standing"] == "blocked" and body["has_usable_card"] is False
    assert body["standing_label"] == "Payment overdue: new launches blocked"
    assert body["past_due_since"] is not None


def test_other_tenants_get_404_and_members_403(api_client, organization, account, member_of):
    card_add(account)
    stranger_org = OrganizationFactory(owner=UserFactory())
    billing_account_get_or_create(organization=stranger_org)
    api_client.force_authenticate(stranger_org.memberships.get().user)
    assert api_client.get(url(organization, "cards")).status_code == 404
    assert api_client.get(url(organization, "standing")).status_code == 404

    api_client.force_authenticate(member_of(organization, Role.MEMBER))
    assert api_client.get(url(organization, "cards")).status_code == 403
