"""Bad input answers a 4xx JSON with a reason, never a 500, and changes nothing (issue 9).

The three shapes a schema fuzzer found (non-integer ids, NUL in a launch, huge pagination
numbers) plus control characters, lone surrogates, bad tokens and oversized bodies.
"""

from __future__ import annotations

import json

import pytest

from apps.accounts import services
from apps.accounts.models import ApiKey, Invitation, Membership, Role
from apps.accounts.selectors import organization_access_get
from apps.catalog.models import Flavor, Image, Offering, Region
from apps.instances.models import Instance
from tests.factories.accounts import MembershipFactory, OrganizationFactory, UserFactory
from tests.factories.catalog import RegionFactory

pytestmark = pytest.mark.django_db

NOT_AN_INT = ["abc", "1.5", "-1", "1e3", "%00", "0x10"]
HUGE = "99999999999999999999"


@pytest.fixture
def owner_access(org, user):
    return organization_access_get(user=user, slug=org.slug)


@pytest.fixture
def admin_key(api_client, owner_access):
    """The client speaks with an admin API key of `org`, as scripts do."""
    key, token = services.api_key_create(access=owner_access, name="script", role=Role.ADMIN)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return key


def _reason(response) -> str:
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    return str(response.json()["detail"])


# --- ids that are not integers ------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", [*NOT_AN_INT, HUGE])
def test_revoking_an_api_key_by_a_non_integer_id_is_404_and_revokes_nothing(api_client, org, admin_key, bad_id):
    # Given an active key
    # When a revoke names an id that is no key's
    response = api_client.post(f"/api/v1/organizations/{org.slug}/api-keys/{bad_id}/revoke/")
    # Then a JSON 404 with a reason, and the key is still active
    assert response.status_code == 404 and _reason(response)
    assert ApiKey.objects.get(pk=admin_key.pk).is_active


@pytest.mark.parametrize("bad_id", [*NOT_AN_INT, HUGE])
def test_revoking_an_invitation_by_a_non_integer_id_is_404(api_client, org, owner_access, admin_key, bad_id):
    invitation = services.invitation_create(access=owner_access, email="new@example.test", role=Role.MEMBER)
    response = api_client.post(f"/api/v1/organizations/{org.slug}/invitations/{bad_id}/revoke/")
    assert response.status_code == 404 and _reason(response)
    assert Invitation.objects.get(pk=invitation.pk).display_status == "pending"


@pytest.mark.parametrize("bad_id", [*NOT_AN_INT, HUGE])
@pytest.mark.parametrize("method", ["delete", "patch"])
def test_changing_or_removing_a_member_by_a_non_integer_id_is_404(api_client, org, admin_key, method, bad_id):
    # Given a viewer in the organization
    viewer = MembershipFactory(organization=org, role=Role.VIEWER)
    # When a DELETE or a PATCH names an id that is not a membership's
    response = getattr(api_client, method)(
        f"/api/v1/organizations/{org.slug}/members/{bad_id}/", {"role": "admin"}, format="json"
    )
    # Then a JSON 404, and the membership is untouched
    assert response.status_code == 404 and _reason(response)
    assert Membership.objects.get(pk=viewer.pk).role == Role.VIEWER


@pytest.mark.parametrize("bad_id", ["abc", "123", "c97bd362-b469-4a5a-9113"])
def test_an_instance_id_that_is_not_a_uuid_is_404(api_client, org, admin_key, bad_id):
    response = api_client.post(f"/api/v1/organizations/{org.slug}/instances/{bad_id}/stop/")
    assert response.status_code == 404 and _reason(response)


# --- NUL and other control characters -----------------------------------------------------------


@pytest.fixture
def launch_body(demo_catalog) -> dict:
    flavor = Flavor.objects.select_related("offering").filter(offering__kind="notebook").first()
    image = Image.objects.filter(offering_kinds__contains=["notebook"]).first()
    return {
        "flavor": f"{flavor.offering.slug}/{flavor.slug}",
        "image": image.slug,
        "region": Region.objects.filter(is_active=True).first().code,
        "name": "nb-1",
    }


@pytest.mark.parametrize("field", ["image", "region"])
def test_a_nul_byte_in_a_launch_is_400_naming_the_field(api_client, org, admin_key, launch_body, field):
    # Given an otherwise valid launch
    body = {**launch_body, field: launch_body[field] + "\x00"}
    # When the image or the region holds a NUL byte
    response = api_client.post(f"/api/v1/organizations/{org.slug}/instances/", body, format="json")
    # Then 400 with a reason naming the field and the character, and nothing was launched
    assert response.status_code == 400
    assert f"body.{field} contains U+0000" in _reason(response)
    assert not Instance.objects.exists()


@pytest.mark.parametrize("text", ["Team\x1b[31m", "bell\x07", "del\x7f", "nul\x00"])
def test_control_characters_in_any_text_field_are_400(api_client, org, admin_key, text):
    response = api_client.post(f"/api/v1/organizations/{org.slug}/projects/", {"name": text}, format="json")
    assert response.status_code == 400 and "Control characters" in _reason(response)
    assert not org.projects.filter(name__startswith=text[:3]).exists()


def test_a_lone_surrogate_in_a_json_body_is_400(api_client, org, admin_key):
    # JSON may escape half of a UTF-16 pair; no database can store it.
    body = '{"name": "half \\ud800 pair"}'
    response = api_client.post(f"/api/v1/organizations/{org.slug}/projects/", body, content_type="application/json")
    assert response.status_code == 400 and "U+D800" in _reason(response)


def test_tabs_and_newlines_stay_allowed_in_text(api_client, org, owner_access):
    # Given an invitation (the accept token is the only free text a person sends)
    # When a token with a newline is sent it is simply not found: the guard did not refuse it
    user = UserFactory()
    api_client.force_login(user)
    response = api_client.post("/api/v1/invitations/accept/", {"token": "abc\ndef\t"}, format="json")
    assert response.status_code == 404


def test_a_nul_byte_in_a_catalog_filter_is_400_anonymously(api_client, demo_catalog):
    response = api_client.get("/api/v1/catalog/flavors/", {"region": "us-east-1\x00"})
    assert response.status_code == 400 and "query parameter 'region' contains U+0000" in _reason(response)


@pytest.mark.parametrize("path", ["/api/v1/catalog/offerings/%00/", "/api/v1/catalog/regions/us%00east/"])
def test_a_nul_byte_in_a_catalog_path_is_404(api_client, demo_catalog, path):
    response = api_client.get(path)
    assert response.status_code == 404 and _reason(response)


def test_a_nul_byte_in_an_api_key_is_401(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Bearer nck_ab\x00cd_secret")
    response = api_client.get("/api/v1/me/")
    assert response.status_code == 401 and "API key" in _reason(response)


# --- pagination numbers -------------------------------------------------------------------------


@pytest.mark.parametrize("listing", ["offerings", "flavors", "regions", "images", "gpu-models"])
def test_a_huge_limit_on_the_catalog_is_capped_anonymously(api_client, demo_catalog, listing):
    # When an anonymous caller asks for more rows than PostgreSQL can count
    response = api_client.get(f"/api/v1/catalog/{listing}/", {"limit": HUGE})
    # Then the page is capped, not a server error
    assert response.status_code == 200
    assert 0 < len(response.json()["results"]) <= 200


def test_the_limit_cap_is_200(api_client):
    # Given more regions than the cap
    RegionFactory.create_batch(205)
    # When a page of a million is asked for
    page = api_client.get("/api/v1/catalog/regions/", {"limit": "1000000"}).json()
    # Then 200 rows come, and the next link continues from there
    assert len(page["results"]) == 200 and page["count"] >= 205
    assert "offset=200" in page["next"]


def test_a_huge_offset_on_the_catalog_is_the_empty_last_page(api_client, demo_catalog):
    response = api_client.get("/api/v1/catalog/offerings/", {"offset": HUGE, "limit": HUGE})
    assert response.status_code == 200
    body = response.json()
    assert body["results"] == [] and body["count"] == Offering.objects.filter(is_public=True).count()


@pytest.mark.parametrize("listing", ["members", "instances", "api-keys", "invitations", "projects", "invoices"])
def test_huge_limits_and_offsets_on_an_organization_list_are_capped(api_client, org, admin_key, listing):
    url = f"/api/v1/organizations/{org.slug}/{listing}/"
    assert api_client.get(url, {"limit": HUGE}).status_code == 200
    assert api_client.get(url, {"offset": HUGE}).json()["results"] == []


@pytest.mark.parametrize(
    ("query", "named"), [({"limit": "abc"}, "limit"), ({"limit": "0"}, "limit"), ({"offset": "-1"}, "offset")]
)
def test_a_limit_or_offset_that_is_no_whole_number_is_400_with_a_reason(api_client, demo_catalog, query, named):
    response = api_client.get("/api/v1/catalog/offerings/", query)
    assert response.status_code == 400 and f"'{named}' must be a whole number" in _reason(response)


# --- oversized bodies ---------------------------------------------------------------------------


def test_an_oversized_body_is_413_and_changes_nothing(api_client, org, admin_key, settings):
    # Given a small body limit (the production one is Django's DATA_UPLOAD_MAX_MEMORY_SIZE)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    projects_before = org.projects.count()
    # When a body past it is sent
    body = json.dumps({"name": "p", "padding": "x" * 2048})
    response = api_client.post(f"/api/v1/organizations/{org.slug}/projects/", body, content_type="application/json")
    # Then 413 with the limit in the reason, and no project was made
    assert response.status_code == 413 and "at most 1024 bytes" in _reason(response)
    assert org.projects.count() == projects_before


def test_another_tenants_object_ids_are_404_not_403(api_client, org, admin_key):
    # The typed ids keep tenancy as it was: another organization's member is simply not found.
    other = MembershipFactory(organization=OrganizationFactory(owner=UserFactory()))
    response = api_client.delete(f"/api/v1/organizations/{org.slug}/members/{other.pk}/")
    assert response.status_code == 404
    assert Membership.objects.filter(pk=other.pk).exists()
