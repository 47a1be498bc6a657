"""Services of the accounts app: organizations, invitations, memberships, API keys."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from apps.accounts import selectors, services
from apps.accounts.models import (
    ApiKey,
    Invitation,
    InvitationStatus,
    Membership,
    Organization,
    OrganizationKind,
    Role,
)
from apps.accounts.roles import OrgAccess
from tests.factories.accounts import MembershipFactory, OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db


def access_of(user, organization) -> OrgAccess:
    return selectors.organization_access_get(user=user, slug=organization.slug)


def test_personal_organization_is_created_once():
    user = UserFactory()

    first = services.personal_organization_ensure(user=user)
    second = services.personal_organization_ensure(user=user)

    assert first == second
    assert first.kind == OrganizationKind.PERSONAL
    assert Membership.objects.get(organization=first).role == Role.OWNER


def test_creating_an_organization_makes_the_creator_owner_with_a_default_project():
    user = UserFactory()

    organization = services.organization_create(user=user, name="Acme AI", kind="company")

    assert organization.slug == "acme-ai"
    assert Membership.objects.get(organization=organization, user=user).role == Role.OWNER
    assert list(organization.projects.values_list("slug", flat=True)) == ["default"]


def test_organization_slugs_stay_unique():
    user = UserFactory()
    a = services.organization_create(user=user, name="Acme", kind="company")
    b = services.organization_create(user=user, name="Acme", kind="company")
    assert a.slug != b.slug


@pytest.mark.parametrize(
    "name,kind,reason",
    [
        ("", "company", "name"),
        ("X", "galaxy", "kind"),
        ("CS 101", "course", "parent"),
    ],
)
def test_bad_organization_input_is_refused_with_a_reason(name, kind, reason):
    with pytest.raises(ValidationError) as error:
        services.organization_create(user=UserFactory(), name=name, kind=kind)
    assert reason in error.value.message_dict
    assert not Organization.objects.exists()


def test_invitation_round_trip_gives_the_invited_role(org, user):
    invitee = UserFactory(email="new.hire@example.test")
    invitation = services.invitation_create(access=access_of(user, org), email="New.Hire@example.test", role="admin")
    _, token = services.invitation_token_issue(invitation_id=invitation.pk)

    membership = services.invitation_accept(token=token, user=invitee)

    assert membership.role == Role.ADMIN and membership.organization == org
    invitation.refresh_from_db()
    assert invitation.status == InvitationStatus.ACCEPTED and invitation.accepted_by == invitee


def test_an_invitation_token_works_once(org, user):
    invitee = UserFactory(email="once@example.test")
    invitation = services.invitation_create(access=access_of(user, org), email=invitee.email, role="member")
    _, token = services.invitation_token_issue(invitation_id=invitation.pk)
    services.invitation_accept(token=token, user=invitee)

    with pytest.raises(ValidationError, match="already been used"):
        services.invitation_accept(token=token, user=invitee)


def test_an_expired_invitation_is_refused(org, user):
    invitee = UserFactory(email="late@example.test")
    invitation = services.invitation_create(access=access_of(user, org), email=invitee.email, role="member")
    _, token = services.invitation_token_issue(invitation_id=invitation.pk)
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    with pytest.raises(ValidationError, match="expired"):
        services.invitation_accept(token=token, user=invitee)
    assert not Membership.objects.filter(user=invitee, organization=org).exists()


def test_reissuing_a_token_invalidates_the_previous_link(org, user):
    invitee = UserFactory(email="resend@example.test")
    invitation = services.invitation_create(access=access_of(user, org), email=invitee.email, role="member")
    _, old = services.invitation_token_issue(invitation_id=invitation.pk)
    _, new = services.invitation_token_issue(invitation_id=invitation.pk)

    with pytest.raises(Exception, match="not valid"):
        services.invitation_accept(token=old, user=invitee)
    assert services.invitation_accept(token=new, user=invitee).role == Role.MEMBER


def test_an_invitation_for_another_address_is_refused(org, user):
    invitation = services.invitation_create(access=access_of(user, org), email="right@example.test", role="member")
    _, token = services.invitation_token_issue(invitation_id=invitation.pk)

    with pytest.raises(ValidationError, match="is for right@example.test"):
        services.invitation_accept(token=token, user=UserFactory(email="wrong@example.test"))


def test_a_second_pending_invitation_for_the_same_address_is_refused(org, user):
    services.invitation_create(access=access_of(user, org), email="twice@example.test", role="member")
    with pytest.raises(ValidationError, match="already has a pending invitation"):
        services.invitation_create(access=access_of(user, org), email="TWICE@example.test", role="viewer")


def test_inviting_an_existing_member_is_refused(org, user):
    with pytest.raises(ValidationError, match="already a member"):
        services.invitation_create(access=access_of(user, org), email=user.email, role="member")


@pytest.mark.parametrize("inviter_role", [Role.MEMBER, Role.VIEWER, Role.BILLING])
def test_only_owners_and_admins_invite(org, inviter_role):
    inviter = MembershipFactory(organization=org, role=inviter_role).user
    with pytest.raises(PermissionDenied):
        services.invitation_create(access=access_of(inviter, org), email="x@example.test", role="viewer")


def test_an_admin_cannot_grant_owner(org):
    admin = MembershipFactory(organization=org, role=Role.ADMIN).user
    with pytest.raises(PermissionDenied):
        services.invitation_create(access=access_of(admin, org), email="boss@example.test", role="owner")


def test_the_last_owner_cannot_be_demoted_or_removed(org, user):
    access = access_of(user, org)
    membership = Membership.objects.get(organization=org, user=user)

    with pytest.raises(ValidationError, match="at least one owner"):
        services.membership_role_change(access=access, membership=membership, role="admin")
    with pytest.raises(ValidationError, match="at least one owner"):
        services.membership_remove(access=access, membership=membership)


def test_removing_a_member_revokes_the_keys_they_created(org, user):
    admin_membership = MembershipFactory(organization=org, role=Role.ADMIN)
    key, _ = services.api_key_create(access=access_of(admin_membership.user, org), name="ci")

    services.membership_remove(access=access_of(user, org), membership=admin_membership)

    key.refresh_from_db()
    assert key.revoked_at is not None


def test_api_key_secret_is_stored_only_as_a_digest(org, user):
    key, token = services.api_key_create(access=access_of(user, org), name="ci", role="viewer")

    secret = token.split("_", 2)[2]
    stored = ApiKey.objects.filter(pk=key.pk).values().get()
    assert all(secret not in str(value) for value in stored.values())
    assert key.secret_hash == selectors.token_digest(secret)
    assert services.api_key_authenticate(token=token) == key


@pytest.mark.parametrize("mutate", ["revoke", "expire", "tamper"])
def test_revoked_expired_or_tampered_keys_do_not_authenticate(org, user, mutate):
    key, token = services.api_key_create(access=access_of(user, org), name="ci")
    if mutate == "revoke":
        services.api_key_revoke(access=access_of(user, org), api_key=key)
    elif mutate == "expire":
        ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    else:
        token = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert services.api_key_authenticate(token=token) is None


def test_key_last_used_is_recorded_at_most_once_a_minute(org, user):
    key, token = services.api_key_create(access=access_of(user, org), name="ci")
    services.api_key_authenticate(token=token)
    first = ApiKey.objects.get(pk=key.pk).last_used_at
    services.api_key_authenticate(token=token)
    assert first is not None and ApiKey.objects.get(pk=key.pk).last_used_at == first


@pytest.mark.parametrize("expires_in", [timedelta(seconds=-5), timedelta(days=4000)])
def test_api_key_expiry_must_be_future_and_bounded(org, user, expires_in):
    with pytest.raises(ValidationError, match="expir|at most"):
        services.api_key_create(access=access_of(user, org), name="ci", expires_at=timezone.now() + expires_in)


def test_a_key_cannot_outrank_its_creator(org):
    member = MembershipFactory(organization=org, role=Role.ADMIN).user
    with pytest.raises(ValidationError):
        services.api_key_create(access=access_of(member, org), name="x", role="owner")


def test_access_to_another_tenant_is_not_found():
    from django.http import Http404

    mine, theirs = OrganizationFactory(owner=UserFactory()), OrganizationFactory(owner=UserFactory())
    me = mine.memberships.get().user
    with pytest.raises(Http404):
        selectors.organization_access_get(user=me, slug=theirs.slug)
