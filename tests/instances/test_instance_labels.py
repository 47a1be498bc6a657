"""Instance labels: set on the instance's page (a small form outside its live partial) and
through the API (PATCH); they override the project's labels key by key in chargeback. The owner
of the instance, or an organization owner/admin, may change them; another member or a viewer may
not (403); another organization's instance is 404; a bad pair is an error with what was typed kept."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.accounts.models import Role
from apps.instances.models import Instance
from tests.factories.accounts import MembershipFactory, OrganizationFactory, UserFactory
from tests.factories.billing import InstanceFactory

pytestmark = pytest.mark.django_db


def _member(org, role):
    user = UserFactory()
    MembershipFactory(organization=org, user=user, role=role)
    return user


@pytest.fixture
def alice(org):
    return _member(org, Role.MEMBER)


@pytest.fixture
def instance(org, alice):
    return InstanceFactory(organization=org, owner=alice, name="trainer")


def _browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _page(org, instance) -> str:
    return f"/orgs/{org.slug}/instances/{instance.pk}/"


# --- the page -----------------------------------------------------------------------------------


def test_the_owner_sets_labels_on_the_instance_page(org, alice, instance):
    browser = _browser(alice)
    page = browser.get(_page(org, instance)).content.decode()
    assert 'data-testid="instance-labels-form"' in page

    response = browser.post(f"{_page(org, instance)}labels/", {"labels": "cost-centre=CC-2, run=baseline"})

    assert response.status_code == 302
    instance.refresh_from_db()
    assert instance.labels == {"cost-centre": "CC-2", "run": "baseline"}
    html = browser.get(_page(org, instance)).content.decode()
    assert "cost-centre=CC-2" in html and "Labels set: cost-centre=CC-2, run=baseline" in html


def test_a_bad_pair_is_an_error_and_what_was_typed_is_kept(org, alice, instance):
    instance.labels = {"team": "ml"}
    instance.save(update_fields=["labels"])

    response = _browser(alice).post(f"{_page(org, instance)}labels/", {"labels": "team=ml, =x, Big=y"})

    assert response.status_code == 400
    html = response.content.decode()
    assert "Label key “”" in html and "Label key “Big”" in html
    assert "team=ml, =x, Big=y" in html
    instance.refresh_from_db()
    assert instance.labels == {"team": "ml"}


@pytest.mark.parametrize(("role", "may"), [(Role.OWNER, True), (Role.ADMIN, True), (Role.MEMBER, False)])
def test_owners_and_admins_may_label_any_instance_other_members_not(org, instance, role, may):
    user = _member(org, role)
    browser = _browser(user)
    page = browser.get(_page(org, instance)).content.decode()
    assert ('data-testid="instance-labels-form"' in page) is may

    response = browser.post(f"{_page(org, instance)}labels/", {"labels": "a=b"})

    assert response.status_code == (302 if may else 403)
    instance.refresh_from_db()
    assert instance.labels == ({"a": "b"} if may else {})


def test_a_viewer_owning_nothing_and_a_stranger_cannot(org, instance):
    viewer = _member(org, Role.VIEWER)
    assert _browser(viewer).post(f"{_page(org, instance)}labels/", {"labels": "a=b"}).status_code == 403
    stranger = UserFactory()
    other = OrganizationFactory(owner=stranger)
    browser = _browser(stranger)
    assert browser.post(f"{_page(org, instance)}labels/", {"labels": "a=b"}).status_code == 404
    assert browser.post(f"/orgs/{other.slug}/instances/{instance.pk}/labels/", {"labels": "a=b"}).status_code == 404
    instance.refresh_from_db()
    assert instance.labels == {}


# --- the API ------------------------------------------------------------------------------------


def _api(org, instance) -> str:
    return f"/api/v1/organizations/{org.slug}/instances/{instance.pk}/"


def test_the_api_shows_and_patches_labels(org, alice, instance, api_client):
    api_client.force_authenticate(alice)
    assert api_client.get(_api(org, instance)).json()["labels"] == {}

    response = api_client.patch(_api(org, instance), {"labels": {"cost-centre": "CC-2"}}, format="json")

    assert response.status_code == 200 and response.json()["labels"] == {"cost-centre": "CC-2"}
    assert Instance.objects.get(pk=instance.pk).labels == {"cost-centre": "CC-2"}
    listed = api_client.get(f"/api/v1/organizations/{org.slug}/instances/").json()["results"]
    assert [row["labels"] for row in listed] == [{"cost-centre": "CC-2"}]
    cleared = api_client.patch(_api(org, instance), {"labels": {}}, format="json")
    assert cleared.status_code == 200 and cleared.json()["labels"] == {}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"labels": {"cost centre": "x"}}, "Label key"),
        ({"labels": {"team": "a=b"}}, "Label value"),
        ({"labels": "team=ml"}, "string keys to string values"),
        ({}, "required"),
    ],
)
def test_bad_labels_are_a_400_with_a_reason(org, alice, instance, api_client, body, reason):
    api_client.force_authenticate(alice)
    response = api_client.patch(_api(org, instance), body, format="json")
    assert response.status_code == 400
    assert reason in " ".join(response.json()["labels"])
    instance.refresh_from_db()
    assert instance.labels == {}


def test_the_api_refuses_other_members_and_other_tenants(org, instance, api_client):
    api_client.force_authenticate(_member(org, Role.MEMBER))
    assert api_client.patch(_api(org, instance), {"labels": {"a": "b"}}, format="json").status_code == 403
    stranger = UserFactory()
    other = OrganizationFactory(owner=stranger)
    api_client.force_authenticate(stranger)
    assert api_client.patch(_api(org, instance), {"labels": {"a": "b"}}, format="json").status_code == 404
    theirs = f"/api/v1/organizations/{other.slug}/instances/{instance.pk}/"
    assert api_client.patch(theirs, {"labels": {"a": "b"}}, format="json").status_code == 404
    instance.refresh_from_db()
    assert instance.labels == {}
