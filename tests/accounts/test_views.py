"""HTML pages of accounts: sign-up errors, organizations, members, API keys."""

import pytest
from allauth.account.models import EmailAddress
from django.urls import reverse

from apps.accounts.models import ApiKey, Invitation, Organization, OrganizationKind, User
from tests.factories.accounts import PASSWORD, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

SIGNUP = "/accounts/signup/"


def test_sign_up_creates_an_unverified_user_with_a_personal_organization(client):
    response = client.post(
        SIGNUP, {"email": "new@x.test", "password1": "a-Long-passphrase-7", "password2": "a-Long-passphrase-7"}
    )
    assert response.status_code == 302
    user = User.objects.get(email="new@x.test")
    assert not EmailAddress.objects.get(user=user).verified
    assert Organization.objects.get(memberships__user=user).kind == OrganizationKind.PERSONAL


@pytest.mark.parametrize(
    "data,message",
    [
        (
            {"email": "taken@x.test", "password1": "a-Long-passphrase-7", "password2": "a-Long-passphrase-7"},
            "already registered",
        ),
        ({"email": "weak@x.test", "password1": "password", "password2": "password"}, "too common"),
        ({"email": "short@x.test", "password1": "Ab1!", "password2": "Ab1!"}, "too short"),
        ({"email": "", "password1": "", "password2": ""}, "This field is required"),
        (
            {"email": "mismatch@x.test", "password1": "a-Long-passphrase-7", "password2": "other-Long-pass-8"},
            "same password",
        ),
    ],
)
def test_bad_sign_up_input_gets_a_clear_message(client, data, message):
    UserFactory(email="taken@x.test")
    response = client.post(SIGNUP, data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert User.objects.count() == 1


def test_unverified_users_cannot_log_in_until_they_verify(client):
    client.post(SIGNUP, {"email": "v@x.test", "password1": "a-Long-passphrase-7", "password2": "a-Long-passphrase-7"})
    client.logout()
    response = client.post("/accounts/login/", {"login": "v@x.test", "password": "a-Long-passphrase-7"})
    assert response.status_code == 302 and "confirm-email" in response["Location"]


def test_dashboard_goes_to_the_current_organization(client, org, user):
    client.force_login(user)
    client.post(reverse("accounts:organization-switch"), {"slug": org.slug})
    response = client.get(reverse("accounts:dashboard"))
    assert response["Location"] == reverse("accounts:organization-detail", args=[org.slug])


def test_creating_an_organization_from_the_page(client, user):
    client.force_login(user)
    response = client.post(reverse("accounts:organization-list"), {"name": "Lab", "kind": "university"})
    organization = Organization.objects.get(name="Lab")
    assert response["Location"] == reverse("accounts:organization-detail", args=[organization.slug])


def test_organization_form_errors_are_shown_and_save_nothing(client, user):
    client.force_login(user)
    response = client.post(reverse("accounts:organization-list"), {"name": "", "kind": "planet"})
    assert response.status_code == 400
    assert "This field is required" in response.content.decode()
    assert not Organization.objects.filter(kind__in=["company", "university"]).exists()


def test_invite_form_shows_a_duplicate_as_a_form_error(client, org, user):
    client.force_login(user)
    url = reverse("accounts:members", args=[org.slug])
    client.post(url, {"email": "dup@x.test", "role": "member"})
    response = client.post(url, {"email": "dup@x.test", "role": "member"})
    assert response.status_code == 400 and "pending invitation" in response.content.decode()
    assert Invitation.objects.count() == 1


def test_members_page_lists_members_in_bounded_queries(client, org, user, django_assert_max_num_queries):
    client.force_login(user)
    MembershipFactory.create_batch(25, organization=org)
    with django_assert_max_num_queries(15):
        response = client.get(reverse("accounts:members", args=[org.slug]))
    assert response.content.decode().count("data-member=") == 26


def test_a_member_sees_no_admin_controls_and_cannot_open_api_keys(client, org):
    member = MembershipFactory(organization=org, role="member").user
    client.force_login(member)
    page = client.get(reverse("accounts:members", args=[org.slug])).content.decode()
    assert "invite-form" not in page and "Remove" not in page
    assert client.get(reverse("accounts:api-keys", args=[org.slug])).status_code == 403


def test_api_key_page_shows_the_token_once(client, org, user):
    client.force_login(user)
    url = reverse("accounts:api-keys", args=[org.slug])
    created = client.post(url, {"name": "ci", "role": "member", "expires_in_days": 30}).content.decode()
    key = ApiKey.objects.get()
    assert f"nck_{key.prefix}_" in created and "shown only once" in created
    assert f"nck_{key.prefix}_" in client.get(url).content.decode()  # prefix column …
    assert "shown only once" not in client.get(url).content.decode()  # … but never the secret again


def test_invitation_page_for_anonymous_visitor_explains_how_to_accept(client, org, user):
    from apps.accounts import services
    from apps.accounts.selectors import organization_access_get

    invitation = services.invitation_create(
        access=organization_access_get(user=user, slug=org.slug), email="z@x.test", role="member"
    )
    _, token = services.invitation_token_issue(invitation_id=invitation.pk)
    page = client.get(reverse("accounts:invitation-accept", args=[token])).content.decode()
    assert "sign up" in page and "z@x.test" in page


def test_log_in_with_a_wrong_password_gets_a_message(client):
    UserFactory(email="p@x.test")
    response = client.post("/accounts/login/", {"login": "p@x.test", "password": PASSWORD + "x"})
    assert response.status_code == 200 and "not correct" in response.content.decode()
