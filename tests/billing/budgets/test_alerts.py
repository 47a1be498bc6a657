"""Budget alerts: mail at 50, 80 and 100 % of a budget, once per budget and month, to the people
who look after billing; a project's budget counts that project's spend only."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.accounts.models import Project
from apps.billing.models import Budget, BudgetAlert
from apps.billing.selectors.budgets import budget_status_list
from apps.billing.selectors.usage import month_bounds, usage_spend_get
from apps.billing.services.budgets import budget_enforce, budgets_enforce
from tests.billing.budgets.spend import spend_add
from tests.factories.accounts import MembershipFactory
from tests.factories.billing import InstanceFactory, run_record

pytestmark = pytest.mark.django_db


def thresholds(budget) -> set[str]:
    return set(BudgetAlert.objects.filter(budget=budget).values_list("threshold", flat=True))


def test_alerts_at_50_80_and_100_percent_each_mailed_once(org, user, eager_tasks, mailoutbox, run_on_commit):
    billing = MembershipFactory(organization=org, role="billing").user
    MembershipFactory(organization=org, role="member")  # not told: members do not look after billing
    budget = Budget.objects.create(organization=org, monthly_amount=Decimal("10.00"))

    # below 50 %: nothing
    spend_add(organization=org, amount="4.99")
    run_on_commit(budgets_enforce)
    assert thresholds(budget) == set() and mailoutbox == []

    # at 50 %: one mail, and enforcing again sends no second one
    spend_add(organization=org, amount="0.01")
    run_on_commit(budgets_enforce)
    run_on_commit(budgets_enforce)
    assert thresholds(budget) == {"50"} and len(mailoutbox) == 1
    assert sorted(mailoutbox[0].to) == sorted([user.email, billing.email])
    assert "50 % of the monthly budget" in mailoutbox[0].subject and "$5.00 of $10.00" in mailoutbox[0].body

    # at 80 % and at 100 %: one mail each
    spend_add(organization=org, amount="3.00")
    run_on_commit(budgets_enforce)
    spend_add(organization=org, amount="2.50")
    run_on_commit(budgets_enforce)
    run_on_commit(budgets_enforce)
    assert thresholds(budget) == {"50", "80", "100"}
    assert [m.subject.split(": ")[1].split(" %")[0] for m in mailoutbox] == ["50", "80", "100"]
    assert BudgetAlert.objects.get(budget=budget, threshold="100").spend == Decimal("10.50")


def test_spend_jumping_past_several_thresholds_sends_one_mail(org, eager_tasks, mailoutbox, run_on_commit):
    budget = Budget.objects.create(organization=org, monthly_amount=Decimal("10.00"))
    spend_add(organization=org, amount="9.00")
    run_on_commit(budgets_enforce)
    assert thresholds(budget) == {"50", "80"}
    assert len(mailoutbox) == 1 and "80 %" in mailoutbox[0].subject


def test_the_next_month_alerts_again(org, eager_tasks, mailoutbox, run_on_commit):
    budget = Budget.objects.create(organization=org, monthly_amount=Decimal("10.00"))
    spend_add(organization=org, amount="6.00")
    run_on_commit(budgets_enforce)
    # given the same spend in the next month (usage records dated there)
    next_month = month_bounds(timezone.now())[1]
    run_record(
        instance=InstanceFactory(organization=org),
        started_at=next_month,
        ended_at=next_month + timedelta(seconds=60),
        hourly_amount=Decimal("360.00"),
    )
    # when budgets are enforced then, the 50 % alert goes out again, for that month
    run_on_commit(budget_enforce, budget_id=budget.pk, now=next_month + timedelta(minutes=5))
    months = sorted(BudgetAlert.objects.filter(budget=budget, threshold="50").values_list("month", flat=True))
    assert months == [month_bounds(timezone.now())[0].date(), next_month.date()]
    assert len(mailoutbox) == 2


def test_a_project_budget_is_independent_of_the_organization_budget(org, eager_tasks, mailoutbox, run_on_commit):
    research = Project.objects.create(organization=org, name="Research", slug="research")
    default = Project.objects.get(organization=org, slug="default")
    org_budget = Budget.objects.create(organization=org, monthly_amount=Decimal("100.00"))
    project_budget = Budget.objects.create(organization=org, project=research, monthly_amount=Decimal("10.00"))

    # Research spends 6: 60 % of its budget, 6 % of the organization's
    spend_add(organization=org, amount="6.00", project=research)
    run_on_commit(budgets_enforce)
    assert thresholds(project_budget) == {"50"} and thresholds(org_budget) == set()
    assert "project Research" in mailoutbox[0].subject

    # the Default project spends 50: the organization reaches 56 %, Research stays at 60 %
    spend_add(organization=org, amount="50.00", project=default)
    run_on_commit(budgets_enforce)
    assert thresholds(org_budget) == {"50"} and thresholds(project_budget) == {"50"}
    assert len(mailoutbox) == 2 and org.name in mailoutbox[1].subject

    # the overview's numbers are the same spend eligibility and enforcement read
    start, end = month_bounds(timezone.now())
    statuses = {s.budget.pk: s for s in budget_status_list(organization=org)}
    assert statuses[org_budget.pk].spend == usage_spend_get(organization_id=org.pk, start=start, end=end)
    assert statuses[project_budget.pk].spend == Decimal("6.00") and statuses[project_budget.pk].percent == 60
    assert statuses[org_budget.pk].percent == 56
