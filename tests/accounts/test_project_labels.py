"""Project labels (key=value pairs chargeback groups by): set when a project is created and on
its labels page, and through the API (PATCH); every bad pair is its own error and nothing typed is
lost; only owners and admins change them; another organization's project is 404."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.accounts.models import Project, Role
from tests.factories.accounts import MembershipFactory, OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db


def _member(org, role) -> UserFactory:
    user = UserFactory()
    MembershipFactory(organization=org, user=user, role=role)
    return user


# --- the pages ----------------------------------------------------------------------------------


def test_a_project_is_created_with_labels(org, owner_client):
    # when the owner adds a project with labels
    response = owner_client.post(
        f"/orgs/{org.slug}/projects/", {"name": "Research", "labels": "cost-centre=CC-104, team = ml"}
    )

    # then it has them, and the organization page shows them
    assert response.status_code == 302
    project = Project.objects.get(organization=org, slug="research")
    assert project.labels == {"cost-centre": "CC-104", "team": "ml"}
    page = owner_client.get(f"/orgs/{org.slug}/").content.decode()
    assert "cost-centre=CC-104" in page


def test_bad_pairs_are_each_an_error_and_what_was_typed_is_kept(org, owner_client):
    # when the labels have two bad pairs
    typed = "cost-centre=CC-104, Bad Key=x, novalue"
    response = owner_client.post(f"/orgs/{org.slug}/projects/", {"name": "Research", "labels": typed})

    # then nothing is made, each bad pair has its message, and the form keeps the name and the labels
    assert response.status_code == 400
    assert not Project.objects.filter(organization=org, slug="research").exists()
    html = response.content.decode()
    assert "Label key “bad key”" in html or "Label key “Bad Key”" in html
    assert "“novalue” is not key=value." in html
    assert 'value="Research"' in html and "Bad Key=x, novalue" in html


def test_the_labels_page_replaces_a_projects_labels(org, owner_client):
    project = Project.objects.create(organization=org, name="Web", slug="web", labels={"team": "web"})
    page = f"/orgs/{org.slug}/projects/{project.pk}/labels/"
    assert 'value="team=web"' in owner_client.get(page).content.decode()

    response = owner_client.post(page, {"labels": "cost-centre=CC-7\nteam=frontend"})

    assert response.status_code == 302
    project.refresh_from_db()
    assert project.labels == {"cost-centre": "CC-7", "team": "frontend"}

    # a bad one keeps the old labels and shows what was typed
    bad = owner_client.post(page, {"labels": "team=a, team=b"})
    assert bad.status_code == 400 and "given twice" in bad.content.decode() and "team=a, team=b" in bad.content.decode()
    project.refresh_from_db()
    assert project.labels == {"cost-centre": "CC-7", "team": "frontend"}


@pytest.mark.parametrize(("role", "status"), [(Role.ADMIN, 200), (Role.MEMBER, 403), (Role.BILLING, 403)])
def test_only_owners_and_admins_open_the_labels_page(org, role, status):
    project = Project.objects.get(organization=org, slug="default")
    client = Client()
    client.force_login(_member(org, role))
    assert client.get(f"/orgs/{org.slug}/projects/{project.pk}/labels/").status_code == status
    assert client.post(f"/orgs/{org.slug}/projects/{project.pk}/labels/", {"labels": "a=b"}).status_code in {302, 403}
    project.refresh_from_db()
    assert project.labels == ({"a": "b"} if status == 200 else {})


def test_another_organizations_project_is_404(org, owner_client):
    other = OrganizationFactory(owner=UserFactory())
    theirs = Project.objects.get(organization=other, slug="default")
    # through my organization's slug, and through theirs
    assert owner_client.get(f"/orgs/{org.slug}/projects/{theirs.pk}/labels/").status_code == 404
    assert owner_client.post(f"/orgs/{other.slug}/projects/{theirs.pk}/labels/", {"labels": "a=b"}).status_code == 404
    theirs.refresh_from_db()
    assert theirs.labels == {}


# --- the API ------------------------------------------------------------------------------------


def test_the_api_creates_reads_and_patches_labels(org, user, api_client):
    api_client.force_authenticate(user)
    base = f"/api/v1/organizations/{org.slug}/projects/"

    created = api_client.post(base, {"name": "ML", "labels": {"cost-centre": "CC-1"}}, format="json")
    assert created.status_code == 201 and created.json()["labels"] == {"cost-centre": "CC-1"}
    pk = created.json()["id"]

    patched = api_client.patch(f"{base}{pk}/", {"labels": {"cost-centre": "CC-2", "team": "ml"}}, format="json")
    assert patched.status_code == 200 and patched.json()["labels"] == {"cost-centre": "CC-2", "team": "ml"}
    assert api_client.get(f"{base}{pk}/").json()["labels"] == {"cost-centre": "CC-2", "team": "ml"}
    assert Project.objects.get(pk=pk).labels == {"cost-centre": "CC-2", "team": "ml"}


@pytest.mark.parametrize(
    ("labels", "reason"),
    [
        ({"Cost Centre": "x"}, "Label key"),
        ({"team": "a,b"}, "Label value"),
        ({"team": 7}, "string keys to string values"),
        (["team=ml"], "string keys to string values"),
        ({f"k{i}": "v" for i in range(17)}, "At most 16 labels"),
    ],
)
def test_bad_labels_are_a_400_with_a_reason(org, user, api_client, labels, reason):
    api_client.force_authenticate(user)
    project = Project.objects.get(organization=org, slug="default")
    response = api_client.patch(
        f"/api/v1/organizations/{org.slug}/projects/{project.pk}/", {"labels": labels}, format="json"
    )
    assert response.status_code == 400
    assert reason in " ".join(response.json()["labels"])
    project.refresh_from_db()
    assert project.labels == {}


def test_the_api_refuses_members_and_other_tenants(org, api_client):
    project = Project.objects.get(organization=org, slug="default")
    api_client.force_authenticate(_member(org, Role.MEMBER))
    url = f"/api/v1/organizations/{org.slug}/projects/{project.pk}/"
    assert api_client.patch(url, {"labels": {"a": "b"}}, format="json").status_code == 403

    other = OrganizationFactory(owner=(stranger := UserFactory()))
    api_client.force_authenticate(stranger)
    assert api_client.patch(url, {"labels": {"a": "b"}}, format="json").status_code == 404
    theirs_url = f"/api/v1/organizations/{other.slug}/projects/{project.pk}/"
    assert api_client.patch(theirs_url, {"labels": {"a": "b"}}, format="json").status_code == 404
    assert api_client.get(theirs_url).status_code == 404
    project.refresh_from_db()
    assert project.labels == {}
