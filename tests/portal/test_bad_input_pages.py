"""HTML pages answer text with control characters with a 400 that says where, never a 500
(issue 9); the API's JSON answers are in test_bad_input.py."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.catalog.models import Flavor, Image, Region
from apps.instances.models import Instance

pytestmark = pytest.mark.django_db



def test_a_nul_in_the_launch_forms_region_is_a_400_and_launches_nothing(owner_client, org, demo_catalog):
    # Given the launch form filled in, with a NUL slipped into the region (a model choice)
    flavor = Flavor.objects.filter(offering__kind="notebook").first()
    form = {
        "flavor": flavor.pk,
        "image": Image.objects.filter(offering_kinds__contains=["notebook"]).first().pk,
        "region": f"{Region.objects.first().pk}\x00",
        "name": "nul-region",
    }
    # When it is posted
    response = owner_client.post(f"/orgs/{org.slug}/instances/new/", form)
    # Then it is refused with the reason, and nothing was launched
    assert response.status_code == 400
    assert "U+0000" in response.content.decode() and "the form.region" in response.content.decode()
    assert not Instance.objects.filter(name="nul-region").exists()


@pytest.mark.parametrize("query", ["?next=%00", "?page=%01", "?q=%7F"])
def test_control_characters_in_a_pages_query_are_a_400(owner_client, org, query):
    response = owner_client.get(f"/orgs/{org.slug}/instances/{query}")
    assert response.status_code == 400 and "the query" in response.content.decode()


def test_a_nul_in_the_login_form_is_a_400_not_a_lookup(db):
    response = Client().post("/accounts/login/", {"login": "someone\x00@example.com", "password": "x"})
    assert response.status_code == 400 and "U+0000" in response.content.decode()


def test_tabs_and_newlines_in_a_form_are_still_welcome(owner_client, org):
    # Multi-line text is legitimate: the guard lets tab, newline and carriage return through.
    response = owner_client.get(f"/orgs/{org.slug}/instances/?note=a%09b%0Ac%0D")
    assert response.status_code == 200
