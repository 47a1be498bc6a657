"""Setting and removing budgets: who may, what is a valid amount, and that a bad request changes
nothing that was saved."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from apps.accounts.models import Project
from apps.accounts.selectors import organization_access_get
from apps.billing.models import BillingEvent, Budget
from apps.billing.services.budgets import budget_delete, budget_set
from tests.factories.accounts import MembershipFactory, OrganizationFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def access(user, org):
    return organization_access_get(user=user, slug=org.slug)


def test_an_owner_sets_then_changes_the_organization_budget(access, org):
    budget = budget_set(access=access, monthly_amount="250", hard_cap=False)
    assert (budget.monthly_amount, budget.hard_cap, budget.project_id) == (Decimal("250.00"), False, None)
    again = budget_set(access=access, monthly_amount="1,000.50", hard_cap=True)
    assert again.pk == budget.pk and again.monthly_amount == Decimal("1000.50") and again.hard_cap
    assert Budget.objects.filter(organization=org).count() == 1
    assert BillingEvent.objects.filter(account_id=org.pk, kind="budget.set").count() == 2


def test_changing_the_default_cap_makes_it_the_owners_own(access, org):
    Budget.objects.create(organization=org, monthly_amount=Decimal("100"), hard_cap=True, is_default=True)
    budget = budget_set(access=access, monthly_amount="300", hard_cap=True)
    assert budget.monthly_amount == Decimal("300.00") and not budget.is_default


@pytest.mark.parametrize(
    "amount, message",
    [
        ("0", "more than zero"),
        ("-5", "more than zero"),
        ("abc", "such as 250"),
        ("NaN", "more than zero"),
        ("12.345", "at most 2 decimals"),
        ("1e20", "too large"),
    ],
)
def test_bad_amounts_are_refused_and_the_saved_budget_stays(access, org, amount, message):
    budget_set(access=access, monthly_amount="80", hard_cap=True)
    with pytest.raises(ValidationError) as refused:
        budget_set(access=access, monthly_amount=amount, hard_cap=False)
    assert message in str(refused.value.message_dict["monthly_amount"])
    kept = Budget.objects.get(organization=org)
    assert (kept.monthly_amount, kept.hard_cap) == (Decimal("80.00"), True)


def test_a_budget_is_in_the_accounts_currency(access):
    with pytest.raises(ValidationError, match="USD"):
        budget_set(access=access, monthly_amount="80", hard_cap=False, currency="EUR")
    assert budget_set(access=access, monthly_amount="80", hard_cap=False, currency="usd").currency == "USD"


def test_a_project_of_another_organization_is_refused(access):
    theirs = Project.objects.get(organization=OrganizationFactory(), slug="default")
    with pytest.raises(ValidationError, match="another organization"):
        budget_set(access=access, monthly_amount="80", hard_cap=False, project=theirs)
    assert not Budget.objects.exists()


def test_project_and_organization_budgets_are_separate_rows(access, org):
    research = Project.objects.create(organization=org, name="Research", slug="research")
    budget_set(access=access, monthly_amount="100", hard_cap=False)
    budget_set(access=access, monthly_amount="10", hard_cap=True, project=research)
    assert {(b.project_id, b.monthly_amount) for b in Budget.objects.filter(organization=org)} == {
        (None, Decimal("100.00")),
        (research.pk, Decimal("10.00")),
    }


@pytest.mark.parametrize("role, allowed", [("admin", True), ("billing", True), ("member", False), ("viewer", False)])
def test_who_manages_budgets(org, role, allowed):
    member = MembershipFactory(organization=org, role=role).user
    access = organization_access_get(user=member, slug=org.slug)
    if allowed:
        budget = budget_set(access=access, monthly_amount="50", hard_cap=True)
        budget_delete(access=access, budget=budget)
        assert not Budget.objects.exists()
    else:
        with pytest.raises(PermissionDenied):
            budget_set(access=access, monthly_amount="50", hard_cap=True)
        budget = Budget.objects.create(organization=org, monthly_amount=Decimal("50"), hard_cap=True)
        with pytest.raises(PermissionDenied):
            budget_delete(access=access, budget=budget)
        assert Budget.objects.filter(pk=budget.pk).exists()


def test_the_owner_removes_the_default_cap(access, org):
    budget = Budget.objects.create(organization=org, monthly_amount=Decimal("100"), hard_cap=True, is_default=True)
    budget_delete(access=access, budget=budget)
    assert not Budget.objects.filter(organization=org).exists()
    assert BillingEvent.objects.filter(account_id=org.pk, kind="budget.removed").exists()
