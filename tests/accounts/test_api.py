"""REST API v1 of accounts: happy paths, authentication and bad input (4xx with a reason)."""

import pytest

from apps.accounts import services
from apps.accounts.models import ApiKey, Invitation, Membership
from apps.accounts.selectors import organization_access_get
from tests.factories.accounts import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def bearer(api_client, token):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")


def test_anonymous_requests_get_401_with_a_hint(api_client):
    response = api_client.get("/api/v1/organizations/")
    assert response.status_code in (401, 403)
    assert "API key" in response.json()["detail"] or "log in" in response.json()["detail"]


@pytest.mark.parametrize("header", ["Bearer nck_nope_nope", "Bearer garbage", "Bearer "])
def test_a_bad_api_key_gets_401_with_a_reason(api_client, header):
    api_client.credentials(HTTP_AUTHORIZATION=header)
    response = api_client.get("/api/v1/me/")
    assert response.status_code == 401
    assert "API key" in response.json()["detail"]


def test_create_organization_and_list_it_with_role(api_client, user):
    api_client.force_login(user)
    created = api_client.post("/api/v1/organizations/", {"name": "Deep Lab", "kind": "university"}, format="json")
    assert created.status_code == 201 and created.json()["role"] == "owner"
    listed = api_client.get("/api/v1/organizations/").json()["results"]
    assert {"slug": "deep-lab", "role": "owner"}.items() <= next(o for o in listed if o["slug"] == "deep-lab").items()


@pytest.mark.parametrize(
    "payload", [{}, {"name": "x"}, {"name": "", "kind": "company"}, {"name": "x", "kind": "personal"}]
)
def test_bad_organization_payloads_are_400_with_reasons(api_client, user, payload):
    api_client.force_login(user)
    response = api_client.post("/api/v1/organizations/", payload, format="json")
    assert response.status_code == 400
    assert response.json()  # field -> reasons


def test_invite_accept_through_the_api(api_client, org, user):
    api_client.force_login(user)
    created = api_client.post(
        f"/api/v1/organizations/{org.slug}/invitations/", {"email": "dev@x.test", "role": "viewer"}, format="json"
    )
    assert created.status_code == 201 and created.json()["status"] == "pending"
    assert "token" not in created.json()  # the link travels only by email

    invitee = UserFactory(email="dev@x.test")
    _, token = services.invitation_token_issue(invitation_id=created.json()["id"])
    api_client.force_login(invitee)
    accepted = api_client.post("/api/v1/invitations/accept/", {"token": token}, format="json")
    assert accepted.status_code == 200 and accepted.json()["role"] == "viewer"

    reused = api_client.post("/api/v1/invitations/accept/", {"token": token}, format="json")
    assert reused.status_code == 400 and "already been used" in str(reused.json())


def test_a_bad_invitation_token_is_404(api_client, user):
    api_client.force_login(user)
    response = api_client.post("/api/v1/invitations/accept/", {"token": "not-a-token"}, format="json")
    assert response.status_code == 404 and "not valid" in response.json()["detail"]


def test_duplicate_invitation_is_400(api_client, org, user):
    api_client.force_login(user)
    url = f"/api/v1/organizations/{org.slug}/invitations/"
    assert api_client.post(url, {"email": "d@x.test"}, format="json").status_code == 201
    again = api_client.post(url, {"email": "d@x.test"}, format="json")
    assert again.status_code == 400 and "pending invitation" in str(again.json())
    assert Invitation.objects.filter(organization=org).count() == 1


def test_a_viewer_cannot_invite_or_see_keys(api_client, org):
    viewer = MembershipFactory(organization=org, role="viewer").user
    api_client.force_login(viewer)
    assert (
        api_client.post(
            f"/api/v1/organizations/{org.slug}/invitations/", {"email": "z@x.test"}, format="json"
        ).status_code
        == 403
    )
    assert api_client.get(f"/api/v1/organizations/{org.slug}/api-keys/").status_code == 403
    assert api_client.get(f"/api/v1/organizations/{org.slug}/members/").status_code == 200


def test_api_key_is_shown_once_and_works(api_client, org, user):
    api_client.force_login(user)
    created = api_client.post(
        f"/api/v1/organizations/{org.slug}/api-keys/", {"name": "ci", "role": "viewer"}, format="json"
    )
    assert created.status_code == 201
    token = created.json()["token"]
    listed = api_client.get(f"/api/v1/organizations/{org.slug}/api-keys/").json()["results"]
    assert "token" not in listed[0] and token not in str(listed)

    api_client.logout()
    bearer(api_client, token)
    me = api_client.get("/api/v1/me/")
    assert me.status_code == 200 and me.json()["organizations"][0]["role"] == "viewer"
    assert ApiKey.objects.get(pk=created.json()["id"]).last_used_at is not None


def test_a_viewer_key_cannot_write(api_client, org, user):
    _, token = services.api_key_create(
        access=organization_access_get(user=user, slug=org.slug), name="ro", role="viewer"
    )
    bearer(api_client, token)
    response = api_client.post(f"/api/v1/organizations/{org.slug}/projects/", {"name": "p"}, format="json")
    assert response.status_code == 403


def test_a_key_cannot_mint_keys_or_organizations(api_client, org, user):
    _, token = services.api_key_create(
        access=organization_access_get(user=user, slug=org.slug), name="admin", role="admin"
    )
    bearer(api_client, token)
    assert (
        api_client.post(f"/api/v1/organizations/{org.slug}/api-keys/", {"name": "child"}, format="json").status_code
        == 403
    )
    assert api_client.post("/api/v1/organizations/", {"name": "n", "kind": "company"}, format="json").status_code == 403


def test_revoked_key_gets_401(api_client, org, user):
    access = organization_access_get(user=user, slug=org.slug)
    key, token = services.api_key_create(access=access, name="ci")
    services.api_key_revoke(access=access, api_key=key)
    bearer(api_client, token)
    assert api_client.get("/api/v1/me/").status_code == 401


def test_role_change_and_removal(api_client, org, user):
    member = MembershipFactory(organization=org, role="member")
    api_client.force_login(user)
    url = f"/api/v1/organizations/{org.slug}/members/{member.pk}/"
    assert api_client.patch(url, {"role": "admin"}, format="json").json()["role"] == "admin"
    assert api_client.patch(url, {"role": "emperor"}, format="json").status_code == 400
    assert api_client.delete(url).status_code == 204
    assert not Membership.objects.filter(pk=member.pk).exists()


def test_member_list_query_count_does_not_grow_with_members(api_client, org, user, django_assert_max_num_queries):
    api_client.force_login(user)
    url = f"/api/v1/organizations/{org.slug}/members/"
    MembershipFactory.create_batch(3, organization=org)
    with django_assert_max_num_queries(8) as few:
        api_client.get(url)
    MembershipFactory.create_batch(20, organization=org)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(api_client.get(url).json()["results"]) == 24


def test_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200 and b"/api/v1/organizations/" in schema.content
    assert client.get("/api/docs/").status_code == 200
