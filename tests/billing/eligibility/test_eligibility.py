"""Who may launch: a way to pay (card, credits, prepaid credits or invoice terms), payments not
overdue, and no reached hard cap. Every refusal says what to do and where."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.accounts.models import OrganizationKind, Project
from apps.billing.models import (
    BillingAccount,
    Budget,
    CreditGrant,
    PaymentMethod,
    PaymentStanding,
    PaymentTerms,
)
from apps.billing.services.accounts import billing_account_get_or_create
from apps.billing.services.credits import credit_grant_create
from apps.billing.services.eligibility import billing_launch_eligibility_check
from tests.billing.budgets.spend import spend_add
from tests.factories.accounts import OrganizationFactory

pytestmark = pytest.mark.django_db


def check(organization, project=None) -> str | None:
    """None when allowed, else the refusal's message."""
    try:
        billing_launch_eligibility_check(organization=organization, project=project)
    except ValidationError as refused:
        return " ".join(refused.messages)
    return None


def card_add(organization, *, exp_year: int, exp_month: int = 12) -> PaymentMethod:
    return PaymentMethod.objects.create(
        account=billing_account_get_or_create(organization=organization),
        stripe_payment_method_id=f"pm_test_{organization.pk}_{exp_year}",
        brand="visa",
        last4="4242",
        exp_month=exp_month,
        exp_year=exp_year,
        is_default=True,
    )


def credit_add(organization, amount="25.00", **kw) -> CreditGrant:
    return credit_grant_create(
        account=billing_account_get_or_create(organization=organization),
        kind="promotion",
        amount=Decimal(amount),
        description="Welcome credit",
        **kw,
    )


def account_update(organization, **fields) -> None:
    billing_account_get_or_create(organization=organization)
    BillingAccount.objects.filter(organization=organization).update(**fields)


def test_no_card_and_no_credits_is_refused_with_where_to_add_a_card(org):
    reason = check(org)
    assert reason is not None
    assert "no card on file" in reason and f"/orgs/{org.slug}/billing/cards/" in reason


def test_a_usable_card_may_launch(org):
    card_add(org, exp_year=timezone.now().year + 3)
    assert check(org) is None


def test_an_expired_card_is_refused_and_named(org):
    card_add(org, exp_year=timezone.now().year - 1)
    reason = check(org)
    assert reason is not None and "expired" in reason and "4242" in reason


def test_a_detached_card_does_not_count(org):
    card = card_add(org, exp_year=timezone.now().year + 3)
    PaymentMethod.objects.filter(pk=card.pk).update(detached_at=timezone.now())
    assert check(org) is not None


def test_credits_may_launch_without_a_card(org):
    credit_add(org)
    assert check(org) is None


def test_expired_credits_do_not_count(org):
    grant = credit_add(org, expires_at=timezone.now() + timedelta(days=1))
    CreditGrant.objects.filter(pk=grant.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert "no credits left" in check(org)


def test_credits_used_up_by_usage_not_yet_invoiced_do_not_count(org):
    credit_add(org, amount="10.00")
    spend_add(organization=org, amount="10.00")
    assert check(org) is not None
    credit_add(org, amount="0.01")
    assert check(org) is None


@pytest.mark.parametrize("kind", [OrganizationKind.UNIVERSITY, OrganizationKind.COURSE])
def test_universities_and_courses_are_prepaid(kind, user):
    parent = OrganizationFactory(kind=OrganizationKind.UNIVERSITY) if kind == OrganizationKind.COURSE else None
    organization = OrganizationFactory(owner=user, kind=kind, parent=parent)
    assert billing_account_get_or_create(organization=organization).terms == PaymentTerms.PREPAID
    # given no credits: refused, and told to top up, even with a card on file
    card_add(organization, exp_year=timezone.now().year + 3)
    reason = check(organization)
    assert reason is not None and "prepaid credits" in reason and "top up" in reason
    # with credits: may launch
    credit_add(organization)
    assert check(organization) is None


def test_invoice_terms_need_neither_card_nor_credits(org):
    account_update(org, terms=PaymentTerms.INVOICE)
    assert check(org) is None


@pytest.mark.parametrize("standing", [PaymentStanding.BLOCKED, PaymentStanding.SUSPENDED])
def test_overdue_payments_are_refused_even_with_a_card(org, standing):
    card_add(org, exp_year=timezone.now().year + 3)
    account_update(org, standing=standing)
    reason = check(org)
    assert reason is not None and "overdue" in reason and f"/orgs/{org.slug}/billing/cards/" in reason


def test_the_grace_period_still_launches(org):
    card_add(org, exp_year=timezone.now().year + 3)
    account_update(org, standing=PaymentStanding.GRACE)
    assert check(org) is None


def test_a_reached_hard_cap_is_refused_with_where_to_raise_it(org):
    credit_add(org, amount="500.00")
    Budget.objects.create(organization=org, monthly_amount=Decimal("20.00"), hard_cap=True)
    spend_add(organization=org, amount="19.99")
    assert check(org) is None
    spend_add(organization=org, amount="0.01")
    reason = check(org)
    assert reason is not None
    assert "cap of $20.00" in reason and org.name in reason and f"/orgs/{org.slug}/billing/budgets/" in reason


def test_a_budget_without_hard_cap_never_refuses(org):
    credit_add(org, amount="500.00")
    Budget.objects.create(organization=org, monthly_amount=Decimal("20.00"), hard_cap=False)
    spend_add(organization=org, amount="30.00")
    assert check(org) is None


def test_a_project_cap_refuses_that_project_only(org):
    credit_add(org, amount="500.00")
    default = Project.objects.get(organization=org, slug="default")
    research = Project.objects.create(organization=org, name="Research", slug="research")
    Budget.objects.create(organization=org, project=research, monthly_amount=Decimal("5.00"), hard_cap=True)
    spend_add(organization=org, amount="5.00", project=research)
    reason = check(org, research)
    assert reason is not None and "project Research" in reason
    assert check(org, default) is None


def test_a_new_personal_account_starts_with_the_default_cap_once(user, settings):
    personal = OrganizationFactory(owner=user, kind=OrganizationKind.PERSONAL)
    billing_account_get_or_create(organization=personal)
    cap = Budget.objects.get(organization=personal, project=None)
    assert cap.hard_cap and cap.is_default and cap.monthly_amount == settings.BILLING["DEFAULT_MONTHLY_CAP"]
    # when the owner removes it, asking again does not bring it back
    cap.delete()
    billing_account_get_or_create(organization=personal)
    assert not Budget.objects.filter(organization=personal).exists()


def test_companies_start_without_a_cap(org):
    billing_account_get_or_create(organization=org)
    assert not Budget.objects.filter(organization=org).exists()
