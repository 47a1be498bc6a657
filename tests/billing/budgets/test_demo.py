"""The run command's demo data: the demo logins can launch a notebook at once, and loading the
demo again adds nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.management import call_command

from apps.accounts.models import Organization, OrganizationKind
from apps.billing.models import Budget, CreditGrant
from apps.billing.services.eligibility import billing_launch_eligibility_check

pytestmark = pytest.mark.django_db


def test_demo_organizations_can_launch_and_loading_twice_adds_nothing():
    call_command("demo_load")
    call_command("demo_load")
    acme = Organization.objects.get(name="Acme AI")
    personal = Organization.objects.get(
        kind=OrganizationKind.PERSONAL, memberships__user__email="demo@neocloud.localhost"
    )
    for organization in (acme, personal, Organization.objects.get(name="CS 484: Deep Learning Systems")):
        billing_launch_eligibility_check(organization=organization)
        assert CreditGrant.objects.filter(account_id=organization.pk).count() == 1
    welcome = CreditGrant.objects.get(account_id=acme.pk)
    assert welcome.amount == Decimal("50.00") and welcome.expires_at is not None
    # the demo's personal organization has the default cap of every new self-serve account
    assert Budget.objects.get(organization=personal, project=None).is_default
    assert Budget.objects.get(organization=acme, project=None).hard_cap
