"""Writes to accounts data. Each function is one transaction and checks the caller's authority."""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from portal.live import live_notify_on_commit

from .labels import labels_format, labels_validate
from .models import (
    ApiKey,
    AuditEvent,
    Invitation,
    InvitationStatus,
    Membership,
    Organization,
    OrganizationKind,
    Project,
    Role,
    User,
)
from .roles import OrgAccess
from .selectors import token_digest

API_KEY_TOKEN_PREFIX = "nck"
# last_used_at is written at most this often, so an API client does not turn every read into a write.
API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)


def audit_record(*, organization: Organization, actor_id: int | None, verb: str, target: str = "") -> None:
    AuditEvent.objects.create(organization=organization, actor_id=actor_id, verb=verb, target=target[:200])


def members_group(organization: Organization) -> str:
    return f"org-{organization.pk}-members"


def _publish_members(organization: Organization) -> None:
    live_notify_on_commit(group=members_group(organization))


def _unique_slug(base: str, model=Organization, **scope) -> str:
    root = slugify(base)[:48] or "org"
    candidate = root
    while model.objects.filter(slug=candidate, **scope).exists():
        candidate = f"{root}-{secrets.token_hex(3)}"
    return candidate


# --- organizations -----------------------------------------------------------------------------


@transaction.atomic
def organization_create(*, user: User, name: str, kind: str, parent: Organization | None = None) -> Organization:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the organization a name."})
    if kind not in OrganizationKind.values:
        raise ValidationError({"kind": f"Kind must be one of: {', '.join(OrganizationKind.values)}."})
    if kind == OrganizationKind.COURSE and (parent is None or parent.kind != OrganizationKind.UNIVERSITY):
        raise ValidationError({"parent": "A course belongs to a university organization."})
    organization = Organization.objects.create(
        name=name, slug=_unique_slug(name), kind=kind, parent=parent, created_by=user
    )
    Membership.objects.create(organization=organization, user=user, role=Role.OWNER)
    Project.objects.create(organization=organization, name="Default", slug="default")
    audit_record(organization=organization, actor_id=user.pk, verb="organization.created", target=name)
    return organization


@transaction.atomic
def personal_organization_ensure(*, user: User) -> Organization:
    """Every user has exactly one personal organization; calling this again returns it."""
    existing = Organization.objects.filter(
        kind=OrganizationKind.PERSONAL, memberships__user=user, memberships__role=Role.OWNER
    ).first()
    if existing:
        return existing
    local_part = user.email.split("@")[0]
    return organization_create(user=user, name=f"{local_part} (personal)", kind=OrganizationKind.PERSONAL)


# --- projects ----------------------------------------------------------------------------------


def _labels_checked(labels: object) -> dict[str, str]:
    """`labels` checked by the one label rule, as a ValidationError keyed "labels"."""
    try:
        return labels_validate(labels)
    except ValidationError as error:
        raise ValidationError({"labels": error.messages}) from error


@transaction.atomic
def project_create(*, access: OrgAccess, name: str, labels: dict[str, str] | None = None) -> Project:
    if not access.can_manage_projects:
        raise PermissionDenied("Only owners and admins create projects.")
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the project a name."})
    labels = _labels_checked(labels or {})
    slug = slugify(name)[:64] or "project"
    if Project.objects.filter(organization=access.organization, slug=slug).exists():
        raise ValidationError({"name": f"A project called “{name}” already exists."})
    project = Project.objects.create(organization=access.organization, name=name, slug=slug, labels=labels)
    audit_record(organization=access.organization, actor_id=access.user_id, verb="project.created", target=name)
    return project


@transaction.atomic
def project_labels_set(*, access: OrgAccess, project: Project, labels: dict[str, str]) -> Project:
    """Replace the project's labels (chargeback groups and filters by them; an instance's own
    labels override them key by key). Owners and admins only."""
    if not access.can_manage_projects:
        raise PermissionDenied("Only owners and admins change a project's labels.")
    if project.organization_id != access.organization.pk:
        raise PermissionDenied("That project is not in this organization.")
    labels = _labels_checked(labels)
    Project.objects.filter(pk=project.pk).update(labels=labels)
    project.labels = labels
    audit_record(
        organization=access.organization,
        actor_id=access.user_id,
        verb="project.labels_set",
        target=f"{project.name}: {labels_format(labels)}"[:200],
    )
    return project


# --- invitations -------------------------------------------------------------------------------


@transaction.atomic
def invitation_create(*, access: OrgAccess, email: str, role: str) -> Invitation:
    """Create an invitation; its link is emailed by a Celery task after commit."""
    if not access.can_manage_members:
        raise PermissionDenied("Only owners and admins invite people.")
    email = User.objects.normalize_email((email or "").strip()).lower()
    if not email or "@" not in email:
        raise ValidationError({"email": "Enter a valid email address."})
    if role not in Role.values:
        raise ValidationError({"role": f"Role must be one of: {', '.join(Role.values)}."})
    if not access.can_assign(role):
        raise PermissionDenied(f"Your role cannot grant the {role} role.")
    organization = access.organization
    if organization.kind == OrganizationKind.PERSONAL:
        raise ValidationError(
            {
                "email": "A personal organization has one member; "
                "create a company or university organization to invite people."
            }
        )
    if Membership.objects.filter(organization=organization, user__email__iexact=email).exists():
        raise ValidationError({"email": f"{email} is already a member."})
    # An expired pending invitation no longer blocks a new one.
    Invitation.objects.filter(
        organization=organization,
        email__iexact=email,
        status=InvitationStatus.PENDING,
        expires_at__lte=timezone.now(),
    ).update(status=InvitationStatus.REVOKED, decided_at=timezone.now())
    try:
        with transaction.atomic():
            # The real token is issued by the mail task, so it exists only in the email.
            invitation = Invitation.objects.create(
                organization=organization,
                email=email,
                role=role,
                token_hash=token_digest(secrets.token_urlsafe(32)),
                invited_by_id=access.user_id,
                expires_at=timezone.now() + timedelta(hours=settings.INVITATION_TTL_HOURS),
            )
    except IntegrityError as exc:
        raise ValidationError({"email": f"{email} already has a pending invitation."}) from exc
    audit_record(organization=organization, actor_id=access.user_id, verb="invitation.created", target=email)

    from .tasks import invitation_email_send

    transaction.on_commit(lambda: invitation_email_send.delay(invitation.pk))
    _publish_members(organization)
    return invitation


@transaction.atomic
def invitation_token_issue(*, invitation_id: int) -> tuple[Invitation, str] | None:
    """Give a pending invitation a fresh token and return it; None if it is no longer pending.

    Issuing again (a resend, or a retried mail task) invalidates the previous link.
    """
    token = secrets.token_urlsafe(32)
    changed = Invitation.objects.filter(
        pk=invitation_id, status=InvitationStatus.PENDING, expires_at__gt=timezone.now()
    ).update(token_hash=token_digest(token))
    if not changed:
        return None
    return Invitation.objects.select_related("organization", "invited_by").get(pk=invitation_id), token


@transaction.atomic
def invitation_accept(*, token: str, user: User) -> Membership:
    from .selectors import invitation_get_by_token

    invitation = invitation_get_by_token(token=token)
    if invitation.status == InvitationStatus.ACCEPTED:
        raise ValidationError("This invitation has already been used.")
    if invitation.status == InvitationStatus.REVOKED:
        raise ValidationError("This invitation was withdrawn. Ask the organization for a new one.")
    if invitation.is_expired:
        raise ValidationError("This invitation has expired. Ask the organization for a new one.")
    if invitation.email.lower() != user.email.lower():
        raise ValidationError(f"This invitation is for {invitation.email}; you are signed in as {user.email}.")
    # Compare-and-set: of two concurrent accepts only one changes the row.
    won = Invitation.objects.filter(pk=invitation.pk, status=InvitationStatus.PENDING).update(
        status=InvitationStatus.ACCEPTED, accepted_by=user, decided_at=timezone.now()
    )
    if not won:
        raise ValidationError("This invitation has already been used.")
    membership, created = Membership.objects.get_or_create(
        organization=invitation.organization, user=user, defaults={"role": invitation.role}
    )
    if created:
        audit_record(
            organization=invitation.organization,
            actor_id=user.pk,
            verb="invitation.accepted",
            target=f"{user.email} as {invitation.role}",
        )
    _publish_members(invitation.organization)
    return membership


@transaction.atomic
def invitation_revoke(*, access: OrgAccess, invitation: Invitation) -> Invitation:
    if not access.can_manage_members:
        raise PermissionDenied("Only owners and admins withdraw invitations.")
    changed = Invitation.objects.filter(pk=invitation.pk, status=InvitationStatus.PENDING).update(
        status=InvitationStatus.REVOKED, decided_at=timezone.now()
    )
    if not changed:
        raise ValidationError("Only a pending invitation can be withdrawn.")
    audit_record(
        organization=access.organization, actor_id=access.user_id, verb="invitation.revoked", target=invitation.email
    )
    _publish_members(access.organization)
    invitation.refresh_from_db()
    return invitation


# --- memberships -------------------------------------------------------------------------------


def _ensure_an_owner_remains(membership: Membership) -> None:
    if membership.role != Role.OWNER:
        return
    owners = Membership.objects.select_for_update().filter(organization_id=membership.organization_id, role=Role.OWNER)
    if len(owners) <= 1:
        raise ValidationError("An organization needs at least one owner; make someone else owner first.")


@transaction.atomic
def membership_role_change(*, access: OrgAccess, membership: Membership, role: str) -> Membership:
    if role not in Role.values:
        raise ValidationError({"role": f"Role must be one of: {', '.join(Role.values)}."})
    if not (access.can_assign(role) and access.can_assign(membership.role)):
        raise PermissionDenied("Your role cannot make this change.")
    if role != Role.OWNER:
        _ensure_an_owner_remains(membership)
    old = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        organization=access.organization,
        actor_id=access.user_id,
        verb="membership.role_changed",
        target=f"{membership.user.email}: {old} → {role}",
    )
    _publish_members(access.organization)
    return membership


@transaction.atomic
def membership_remove(*, access: OrgAccess, membership: Membership) -> None:
    leaving_self = membership.user_id == access.user_id
    if not leaving_self and not access.can_assign(membership.role):
        raise PermissionDenied("Your role cannot remove this member.")
    if membership.organization.kind == OrganizationKind.PERSONAL:
        raise ValidationError("You cannot leave your personal organization.")
    _ensure_an_owner_remains(membership)
    # Keys act for the organization on someone's authority; that authority ends with the membership.
    ApiKey.objects.filter(
        organization=membership.organization, created_by=membership.user, revoked_at__isnull=True
    ).update(revoked_at=timezone.now())
    email = membership.user.email
    membership.delete()
    audit_record(organization=access.organization, actor_id=access.user_id, verb="membership.removed", target=email)
    _publish_members(access.organization)


# --- API keys ----------------------------------------------------------------------------------


@transaction.atomic
def api_key_create(
    *, access: OrgAccess, name: str, role: str = Role.MEMBER, expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """Create a key and return it with its full token, which is never shown again."""
    if access.api_key_id is not None:
        raise PermissionDenied("An API key cannot create other API keys; use the web console.")
    if not access.can_manage_api_keys:
        raise PermissionDenied("Only owners and admins manage API keys.")
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the key a name, e.g. 'CI pipeline'."})
    if role not in Role.values or role == Role.OWNER:
        raise ValidationError({"role": "A key's role is one of admin, billing, member or viewer."})
    if not access.can_assign(role):
        raise PermissionDenied(f"Your role cannot create a key with the {role} role.")
    now = timezone.now()
    if expires_at is not None:
        if expires_at <= now:
            raise ValidationError({"expires_at": "The expiry must be in the future."})
        if expires_at > now + timedelta(days=settings.API_KEY_MAX_TTL_DAYS):
            raise ValidationError({"expires_at": f"Keys live at most {settings.API_KEY_MAX_TTL_DAYS} days."})
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        organization=access.organization,
        name=name,
        prefix=prefix,
        secret_hash=token_digest(secret),
        role=role,
        created_by_id=access.user_id,
        expires_at=expires_at,
    )
    audit_record(organization=access.organization, actor_id=access.user_id, verb="api_key.created", target=name)
    return api_key, f"{API_KEY_TOKEN_PREFIX}_{prefix}_{secret}"


@transaction.atomic
def api_key_revoke(*, access: OrgAccess, api_key: ApiKey) -> ApiKey:
    if not access.can_manage_api_keys:
        raise PermissionDenied("Only owners and admins manage API keys.")
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    audit_record(organization=access.organization, actor_id=access.user_id, verb="api_key.revoked", target=api_key.name)
    api_key.refresh_from_db()
    return api_key


def api_key_authenticate(*, token: str) -> ApiKey | None:
    """The active key matching `token`, or None. Records when it was last used."""
    parts = (token or "").split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_TOKEN_PREFIX:
        return None
    _, prefix, secret = parts
    api_key = ApiKey.objects.select_related("organization", "created_by").filter(prefix=prefix).first()
    if api_key is None or not hmac.compare_digest(api_key.secret_hash, token_digest(secret)):
        return None
    if not api_key.is_active or not api_key.created_by.is_active:
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > API_KEY_TOUCH_INTERVAL:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key
