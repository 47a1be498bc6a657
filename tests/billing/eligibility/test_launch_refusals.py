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


def test_the_launch_form_shows_the_reason_and_keeps_what_was_typed(user, org, notebook):
    client = Client()
    client.force_login(user)
    response = client.post(
        f"/orgs/{org.slug}/instances/new/",
        {"flavor": notebook["flavor_pk"], "image": notebook["image"].pk, "region": "us-east-1", "name": "kept-name"},
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "no card on file" in html and 'value="kept-name"' in html


def test_starting_a_stopped_instance_asks_again(user):
    from apps.accounts.selectors import organization_access_get

    org = OrganizationFactory(owner=user, credits=Decimal("5.00"))
    stopped = spend_add(organization=org, amount="5.00")  # the credit is used up by its own run
    stopped.owner = user
    stopped.save(update_fields=["owner"])
    with pytest.raises(ValidationError, match="no credits left"):
        instance_start(access=organization_access_get(user=user, slug=org.slug), instance=stopped)
