"""Reads of accounts data. Every customer-facing read is scoped by the caller's organization."""

from __future__ import annotations

import hashlib

from django.db.models import QuerySet
from django.http import Http404

from .models import ApiKey, Invitation, InvitationStatus, Membership, Organization, Project, SshKey
from .roles import OrgAccess


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def organizations_for_user(*, user) -> QuerySet[Organization]:
    return Organization.objects.filter(memberships__user=user).order_by("kind", "name")


def memberships_for_user(*, user) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(user=user)
        .select_related("organization")
        .order_by("organization__kind", "organization__name")
    )


def organization_access_get(*, user, slug: str, api_key: ApiKey | None = None) -> OrgAccess:
    """The caller's access to organization `slug`, or 404 if they have none.

    Another tenant's organization answers exactly like one that does not exist.
    """
    if api_key is not None:
        if api_key.organization.slug != slug:
            raise Http404("No such organization.")
        return OrgAccess(
            organization=api_key.organization,
            role=api_key.role,
            user_id=api_key.created_by_id,
            api_key_id=api_key.pk,
        )
    if user is None or not user.is_authenticated:
        raise Http404("No such organization.")
    membership = Membership.objects.select_related("organization").filter(user=user, organization__slug=slug).first()
    if membership is None:
        raise Http404("No such organization.")
    return OrgAccess(organization=membership.organization, role=membership.role, user_id=user.pk)


def members_list(*, organization: Organization) -> QuerySet[Membership]:
    return Membership.objects.filter(organization=organization).select_related("user")


def membership_get(*, organization: Organization, membership_id: int) -> Membership:
    try:
        return members_list(organization=organization).get(pk=membership_id)
    except Membership.DoesNotExist as exc:
        raise Http404("No such member.") from exc


def invitations_list(*, organization: Organization) -> QuerySet[Invitation]:
    return Invitation.objects.filter(organization=organization).select_related("invited_by")


def invitations_pending_list(*, organization: Organization) -> QuerySet[Invitation]:
    return invitations_list(organization=organization).filter(status=InvitationStatus.PENDING)


def invitation_get(*, organization: Organization, invitation_id: int) -> Invitation:
    try:
        return invitations_list(organization=organization).get(pk=invitation_id)
    except Invitation.DoesNotExist as exc:
        raise Http404("No such invitation.") from exc


def invitation_get_by_token(*, token: str) -> Invitation:
    try:
        return Invitation.objects.select_related("organization").get(token_hash=token_digest(token))
    except Invitation.DoesNotExist as exc:
        raise Http404("This invitation link is not valid.") from exc


def api_keys_list(*, organization: Organization) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(organization=organization).select_related("created_by")


def api_key_get(*, organization: Organization, api_key_id: int) -> ApiKey:
    try:
        return api_keys_list(organization=organization).get(pk=api_key_id)
    except ApiKey.DoesNotExist as exc:
        raise Http404("No such API key.") from exc


def projects_list(*, organization: Organization) -> QuerySet[Project]:
    return Project.objects.filter(organization=organization)


def project_get(*, organization: Organization, project_id: int) -> Project:
    """One project of `organization`; another organization's (or none) is a 404."""
    project = Project.objects.filter(organization=organization, pk=project_id).first()
    if project is None:
        raise Http404("No such project.")
    return project


def ssh_keys_list(*, user) -> QuerySet[SshKey]:
    """A user's own SSH keys: they belong to the person, not to an organization."""
    return SshKey.objects.filter(owner=user)


def ssh_key_get(*, user, key_id: int) -> SshKey:
    try:
        return ssh_keys_list(user=user).get(pk=key_id)
    except SshKey.DoesNotExist as exc:
        raise Http404("No such SSH key.") from exc
