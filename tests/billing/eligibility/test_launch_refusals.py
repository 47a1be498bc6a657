"""The refusals reach people as a normal form error on the launch page and as a 400 JSON reason
from the API; a stopped instance is asked the same question when started again."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from apps.billing.models import Budget
from apps.instances.models import Instance
from apps.instances.services.actions import instance_start
from tests.billing.budgets.spend import spend_add
from tests.factories.accounts import OrganizationFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def notebook(demo_catalog):
    from apps.catalog.models import Flavor, Image

    flavor = Flavor.objects.get(slug="notebook-1x-h100")
    image = Image.objects.filter(offering_kinds__contains=["notebook"]).first()
    return {"flavor": f"{flavor.offering.slug}/{flavor.slug}", "flavor_pk": flavor.pk, "image": image}


def test_api_launch_without_a_way_to_pay_is_400_with_the_reason(api_client, user, org, notebook):
    api_client.force_login(user)
    response = api_client.post(
        f"/api/v1/organizations/{org.slug}/instances/",
        {"flavor": notebook["flavor"], "image": notebook["image"].slug, "region": "us-east-1", "name": "nb"},
        format="json",
    )
    assert response.status_code == 400
    reason = " ".join(response.json()["detail"])
    assert "no card on file" in reason and f"/orgs/{org.slug}/billing/cards/" in reason
    assert not Instance.objects.filter(organization=org).exists()


def test_api_launch_over_a_hard_cap_is_400_with_the_reason(api_client, user, notebook):
    org = OrganizationFactory(owner=user, credits=Decimal("100.00"))
    Budget.objects.create(organization=org, monthly_amount=Decimal("1.00"), hard_cap=True)
    spend_add(organization=org, amount="1.00")
    api_client.force_login(user)
    response = api_client.post(
        f"/api/v1/organizations/{org.slug}/instances/",
        {"flavor": notebook["flavor"], "image": notebook["image"].slug, "region": "us-east-1", "name": "nb"},
        format="json",
    )
    assert response.status_code == 400
    assert "spending cap of $1.00" in " ".join(response.json()["detail"])


def test_the_launch_page_asks_for_a_card_before_the_form_once_with_a_link(user, org, notebook):
    # Given an organization with no card and no credits
    client = Client()
    client.force_login(user)
    # When its owner opens the launch page
    response = client.get(f"/orgs/{org.slug}/instances/new/")
    # Then, before any form, it says once what to do, as a link (not a raw path in the text)
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="launch-form"' not in html
    assert html.count("Add a card to launch") == 1 and html.count("no card on file") == 1
    assert f'href="/orgs/{org.slug}/billing/cards/add/"' in html
    assert f">/orgs/{org.slug}/billing/" not in html and f" /orgs/{org.slug}/billing/" not in html


def test_a_launch_posted_past_the_gate_is_refused_with_the_gate_and_nothing_created(user, org, notebook):
    client = Client()
    client.force_login(user)
    response = client.post(
        f"/orgs/{org.slug}/instances/new/",
        {"flavor": notebook["flavor_pk"], "image": notebook["image"].pk, "region": "us-east-1", "name": "nb"},
    )
    assert response.status_code == 400
    assert response.content.decode().count("Add a card to launch") == 1
    assert not Instance.objects.filter(organization=org).exists()


def test_with_credits_the_gate_lets_the_form_through(user, notebook):
    org = OrganizationFactory(owner=user, credits=Decimal("10.00"))
    client = Client()
    client.force_login(user)
    html = client.get(f"/orgs/{org.slug}/instances/new/").content.decode()
    assert 'data-testid="launch-form"' in html and "Add a card to launch" not in html


def test_over_a_hard_cap_the_gate_links_to_the_budgets(user, notebook):
    org = OrganizationFactory(owner=user, credits=Decimal("100.00"))
    Budget.objects.create(organization=org, monthly_amount=Decimal("1.00"), hard_cap=True)
    spend_add(organization=org, amount="1.00")
    client = Client()
    client.force_login(user)
    html = client.get(f"/orgs/{org.slug}/instances/new/").content.decode()
    assert "The monthly spending cap is reached" in html
    assert f'href="/orgs/{org.slug}/billing/budgets/"' in html


def test_starting_a_stopped_instance_asks_again(user):
    from apps.accounts.selectors import organization_access_get

    org = OrganizationFactory(owner=user, credits=Decimal("5.00"))
    stopped = spend_add(organization=org, amount="5.00")  # the credit is used up by its own run
    stopped.owner = user
    stopped.save(update_fields=["owner"])
    with pytest.raises(ValidationError, match="no credits left"):
        instance_start(access=organization_access_get(user=user, slug=org.slug), instance=stopped)
