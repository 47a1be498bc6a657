"""The billing overview and budgets pages: who sees them, what they show, that bad input keeps
what was saved, and that their query count does not grow with what they list. Also the running
cost on the instance page and the nav's Billing entry."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from apps.accounts.models import Project
from apps.billing.models import Budget, PaymentStanding
from apps.billing.services.accounts import billing_account_get_or_create
from apps.billing.services.credits import credit_grant_create
from tests.billing.budgets.spend import instance_running, spend_add
from tests.factories.accounts import MembershipFactory, OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client



# --- overview ----------------------------------------------------------------------------------


def test_the_overview_shows_spend_running_cost_credits_and_budgets(owner_client, org):
    credit_grant_create(
        account=billing_account_get_or_create(organization=org),
        kind="promotion",
        amount=Decimal("50.00"),
        description="Welcome",
    )
    Budget.objects.create(organization=org, monthly_amount=Decimal("100.00"), hard_cap=True)
    spend_add(organization=org, amount="12.34")
    running = instance_running(organization=org, hourly="3.60", since_s=100)  # $0.10 so far

    response = owner_client.get(f"/orgs/{org.slug}/billing/")

    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="month-spend">$12.4' in html  # 12.34 plus the running $0.10, to the cent
    assert 'data-testid="running-rate">$3.60/h' in html and running.name in html
    assert 'data-testid="credits">$50.00' in html
    assert "hard cap" in html and "12 %" in html
    assert 'ws-connect="/ws/orgs/' in html and 'hx-trigger="every 5s"' in html


def test_the_overview_polls_as_the_same_partial(owner_client, org):
    response = owner_client.get(f"/orgs/{org.slug}/billing/", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="billing-overview"') and "<html" not in html


@pytest.mark.parametrize("standing, words", [("grace", "payment failed"), ("blocked", "new launches are blocked")])
def test_the_overview_shows_the_payment_standing(owner_client, org, standing, words):
    billing_account_get_or_create(organization=org)
    org.billing_account.__class__.objects.filter(pk=org.pk).update(standing=PaymentStanding(standing))
    html = owner_client.get(f"/orgs/{org.slug}/billing/").content.decode()
    assert 'data-testid="standing-notice"' in html and words in html.lower()


def test_the_overview_names_a_reached_cap(owner_client, org):
    Budget.objects.create(organization=org, monthly_amount=Decimal("1.00"), hard_cap=True)
    spend_add(organization=org, amount="1.00")
    html = owner_client.get(f"/orgs/{org.slug}/billing/").content.decode()
    assert 'data-testid="cap-notice"' in html and "launches refused" in html


@pytest.mark.parametrize("role, status", [("billing", 200), ("admin", 200), ("member", 403), ("viewer", 403)])
def test_only_billing_roles_see_the_overview(org, role, status):
    member = MembershipFactory(organization=org, role=role).user
    assert client_for(member).get(f"/orgs/{org.slug}/billing/").status_code == status
    assert client_for(member).get(f"/orgs/{org.slug}/billing/budgets/").status_code == status


def test_another_tenant_gets_404(org):
    stranger = UserFactory()
    OrganizationFactory(owner=stranger)
    assert client_for(stranger).get(f"/orgs/{org.slug}/billing/").status_code == 404
    assert client_for(stranger).get(f"/orgs/{org.slug}/billing/budgets/").status_code == 404


def test_the_overview_query_count_does_not_grow(owner_client, org, django_assert_max_num_queries):
    instance_running(organization=org, hourly="1.00", since_s=5)
    Budget.objects.create(organization=org, monthly_amount=Decimal("100.00"))
    owner_client.get(f"/orgs/{org.slug}/billing/")  # the account exists from here on
    with django_assert_max_num_queries(40) as first:
        owner_client.get(f"/orgs/{org.slug}/billing/")
    for n in range(5):
        project = Project.objects.create(organization=org, name=f"P{n}", slug=f"p{n}")
        Budget.objects.create(organization=org, project=project, monthly_amount=Decimal("10.00"))
        instance_running(organization=org, hourly="1.00", since_s=5, project=project)
        spend_add(organization=org, amount="1.00", project=project)
    with django_assert_max_num_queries(len(first.captured_queries)):
        html = owner_client.get(f"/orgs/{org.slug}/billing/").content.decode()
    assert html.count('data-testid="running-cost"') == 6


# --- budgets page ------------------------------------------------------------------------------


def test_an_owner_sets_a_project_budget_on_the_page(owner_client, org):
    research = Project.objects.create(organization=org, name="Research", slug="research")
    response = owner_client.post(
        f"/orgs/{org.slug}/billing/budgets/", {"scope": str(research.pk), "monthly_amount": "75", "hard_cap": "on"}
    )
    assert response.status_code == 302
    budget = Budget.objects.get(organization=org, project=research)
    assert budget.monthly_amount == Decimal("75.00") and budget.hard_cap
    page = owner_client.get(f"/orgs/{org.slug}/billing/budgets/").content.decode()
    assert "Research" in page and "$75.00" in page


def test_a_bad_amount_is_a_form_error_and_the_budget_stays(owner_client, org):
    Budget.objects.create(organization=org, monthly_amount=Decimal("40.00"), hard_cap=True)
    response = owner_client.post(f"/orgs/{org.slug}/billing/budgets/", {"scope": "", "monthly_amount": "-3"})
    assert response.status_code == 400 and "more than zero" in response.content.decode()
    assert Budget.objects.get(organization=org).monthly_amount == Decimal("40.00")


def test_a_project_of_another_tenant_is_not_a_choice(owner_client, org):
    theirs = Project.objects.get(organization=OrganizationFactory(), slug="default")
    response = owner_client.post(f"/orgs/{org.slug}/billing/budgets/", {"scope": str(theirs.pk), "monthly_amount": "5"})
    assert response.status_code == 400 and not Budget.objects.exists()


def test_removing_a_budget_and_another_tenants_budget_is_404(owner_client, org):
    mine = Budget.objects.create(organization=org, monthly_amount=Decimal("40.00"))
    theirs = Budget.objects.create(organization=OrganizationFactory(), monthly_amount=Decimal("40.00"))
    assert owner_client.post(f"/orgs/{org.slug}/billing/budgets/{theirs.pk}/delete/").status_code == 404
    assert owner_client.post(f"/orgs/{org.slug}/billing/budgets/{mine.pk}/delete/").status_code == 302
    assert list(Budget.objects.all()) == [theirs]


def test_the_budgets_page_query_count_does_not_grow(owner_client, org, django_assert_max_num_queries):
    Budget.objects.create(organization=org, monthly_amount=Decimal("100.00"))
    owner_client.get(f"/orgs/{org.slug}/billing/budgets/")
    with django_assert_max_num_queries(30) as first:
        owner_client.get(f"/orgs/{org.slug}/billing/budgets/")
    for n in range(5):
        project = Project.objects.create(organization=org, name=f"P{n}", slug=f"p{n}")
        Budget.objects.create(organization=org, project=project, monthly_amount=Decimal("10.00"))
        spend_add(organization=org, amount="1.00", project=project)
    with django_assert_max_num_queries(len(first.captured_queries)):
        owner_client.get(f"/orgs/{org.slug}/billing/budgets/")


# --- nav and the instance page -----------------------------------------------------------------


def test_the_nav_shows_billing_to_those_who_may_see_it(owner_client, org):
    assert 'data-testid="nav-billing"' in owner_client.get("/orgs/").content.decode()
    member = MembershipFactory(organization=OrganizationFactory(), role="member").user
    assert 'data-testid="nav-billing"' not in client_for(member).get("/orgs/").content.decode()


def test_the_instance_page_shows_its_running_cost(owner_client, org):
    instance = instance_running(organization=org, hourly="2.49", since_s=192)
    html = owner_client.get(f"/orgs/{org.slug}/instances/{instance.pk}/").content.decode()
    assert "Running for 3m 1" in html and "so far at $2.49/h" in html
    assert "$0.13" in html or "$0.14" in html  # 192-193 s at $2.49/h
    tick = owner_client.get(f"/orgs/{org.slug}/instances/{instance.pk}/cost/").content.decode()
    assert tick.lstrip().startswith('<p id="running-cost"') and 'hx-trigger="every 5s"' in tick


def test_a_stopped_instance_stops_ticking(owner_client, org):
    stopped = spend_add(organization=org, amount="1.50")
    tick = owner_client.get(f"/orgs/{org.slug}/instances/{stopped.pk}/cost/").content.decode()
    assert "Running for" not in tick and "hx-trigger" not in tick
