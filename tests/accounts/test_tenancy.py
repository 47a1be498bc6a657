"""One tenant never sees another's data: B's objects answer 404 to A, in HTML and in the API,
whether A comes with a session or with an API key."""

import pytest
from django.urls import reverse

from apps.accounts import services
from apps.accounts.selectors import organization_access_get
from tests.factories.accounts import OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenants():
    alice, bob = UserFactory(email="alice@a.test"), UserFactory(email="bob@b.test")
    org_a, org_b = OrganizationFactory(owner=alice, slug="org-a"), OrganizationFactory(owner=bob, slug="org-b")
    access_b = organization_access_get(user=bob, slug="org-b")
    invitation_b = services.invitation_create(access=access_b, email="carol@b.test", role="member")
    key_b, _ = services.api_key_create(access=access_b, name="b-key")
    _, token_a = services.api_key_create(
        access=organization_access_get(user=alice, slug="org-a"), name="a-key", role="admin"
    )
    return {
        "alice": alice,
        "org_a": org_a,
        "org_b": org_b,
        "invitation_b": invitation_b,
        "key_b": key_b,
        "token_a": token_a,
        "member_b": org_b.memberships.get(),
    }


def b_api_paths(t):
    slug = "org-b"
    return [
        f"/api/v1/organizations/{slug}/",
        f"/api/v1/organizations/{slug}/members/",
        f"/api/v1/organizations/{slug}/members/{t['member_b'].pk}/",
        f"/api/v1/organizations/{slug}/invitations/",
        f"/api/v1/organizations/{slug}/invitations/{t['invitation_b'].pk}/",
        f"/api/v1/organizations/{slug}/api-keys/",
        f"/api/v1/organizations/{slug}/api-keys/{t['key_b'].pk}/",
        f"/api/v1/organizations/{slug}/projects/",
    ]


def test_session_user_of_a_gets_404_for_everything_of_b_in_the_api(api_client, tenants):
    api_client.force_login(tenants["alice"])
    for path in b_api_paths(tenants):
        response = api_client.get(path)
        assert response.status_code == 404, path
        assert response.json()["detail"]


def test_api_key_of_a_gets_404_for_everything_of_b(api_client, tenants):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {tenants['token_a']}")
    for path in b_api_paths(tenants):
        assert api_client.get(path).status_code == 404, path


def test_writes_against_b_are_404_and_change_nothing(api_client, tenants):
    api_client.force_login(tenants["alice"])
    slug = "org-b"
    t = tenants
    attempts = [
        ("post", f"/api/v1/organizations/{slug}/invitations/", {"email": "x@x.test", "role": "owner"}),
        ("post", f"/api/v1/organizations/{slug}/invitations/{t['invitation_b'].pk}/revoke/", {}),
        ("post", f"/api/v1/organizations/{slug}/api-keys/", {"name": "steal"}),
        ("post", f"/api/v1/organizations/{slug}/api-keys/{t['key_b'].pk}/revoke/", {}),
        ("patch", f"/api/v1/organizations/{slug}/members/{t['member_b'].pk}/", {"role": "viewer"}),
        ("delete", f"/api/v1/organizations/{slug}/members/{t['member_b'].pk}/", {}),
    ]
    for method, path, data in attempts:
        assert getattr(api_client, method)(path, data, format="json").status_code == 404, path
    t["key_b"].refresh_from_db()
    t["member_b"].refresh_from_db()
    assert t["key_b"].revoked_at is None and t["member_b"].role == "owner"
    assert t["org_b"].invitations.count() == 1 and t["org_b"].api_keys.count() == 1


def test_organization_list_shows_only_own_organizations(api_client, tenants):
    api_client.force_login(tenants["alice"])
    slugs = {o["slug"] for o in api_client.get("/api/v1/organizations/").json()["results"]}
    assert slugs == {"org-a"}


def test_an_api_key_sees_only_its_own_organization(api_client, tenants):
    OrganizationFactory(owner=tenants["alice"], slug="org-a2")  # alice's other org
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {tenants['token_a']}")
    slugs = {o["slug"] for o in api_client.get("/api/v1/organizations/").json()["results"]}
    assert slugs == {"org-a"}
    assert api_client.get("/api/v1/organizations/org-a2/members/").status_code == 404


def test_html_pages_of_b_are_404_for_a(client, tenants):
    client.force_login(tenants["alice"])
    t = tenants
    gets = [
        reverse("accounts:organization-detail", args=["org-b"]),
        reverse("accounts:members", args=["org-b"]),
        reverse("accounts:api-keys", args=["org-b"]),
    ]
    posts = [
        reverse("accounts:members", args=["org-b"]),
        reverse("accounts:invitation-revoke", args=["org-b", t["invitation_b"].pk]),
        reverse("accounts:api-key-revoke", args=["org-b", t["key_b"].pk]),
        reverse("accounts:membership-remove", args=["org-b", t["member_b"].pk]),
        reverse("accounts:membership-role", args=["org-b", t["member_b"].pk]),
        reverse("accounts:organization-switch"),
    ]
    for path in gets:
        assert client.get(path).status_code == 404, path
    for path in posts:
        assert client.post(path, {"slug": "org-b", "role": "viewer", "email": "x@x.test"}).status_code == 404, path
    t["key_b"].refresh_from_db()
    assert t["key_b"].revoked_at is None
    assert t["org_b"].memberships.count() == 1


def test_ids_of_b_inside_a_url_of_a_are_404(client, tenants):
    client.force_login(tenants["alice"])
    t = tenants
    assert client.post(reverse("accounts:api-key-revoke", args=["org-a", t["key_b"].pk])).status_code == 404
    assert client.post(reverse("accounts:invitation-revoke", args=["org-a", t["invitation_b"].pk])).status_code == 404
    assert client.post(reverse("accounts:membership-remove", args=["org-a", t["member_b"].pk])).status_code == 404
