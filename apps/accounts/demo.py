"""Demo users and organizations for the run command. Idempotent: safe to load on every start."""

from __future__ import annotations

from allauth.account.models import EmailAddress
from django.db import transaction

from .models import Membership, Organization, OrganizationKind, Role, User
from .services import organization_create, personal_organization_ensure

DEMO_USERS = [
    # email, password, staff
    ("demo@neocloud.localhost", "demo-password-123", False),
    ("operator@neocloud.localhost", "operator-password-123", True),
    ("ana.finance@acme.localhost", "demo-password-123", False),
    ("prof.lee@northfield.localhost", "demo-password-123", False),
    ("ta.kim@northfield.localhost", "demo-password-123", False),
]

DEMO_ORGS = [
    # name, kind, parent name, {email: role}
    (
        "Acme AI",
        OrganizationKind.COMPANY,
        None,
        {"demo@neocloud.localhost": Role.OWNER, "ana.finance@acme.localhost": Role.BILLING},
    ),
    (
        "Northfield University",
        OrganizationKind.UNIVERSITY,
        None,
        {"prof.lee@northfield.localhost": Role.OWNER, "demo@neocloud.localhost": Role.MEMBER},
    ),
    (
        "CS 484: Deep Learning Systems",
        OrganizationKind.COURSE,
        "Northfield University",
        {"prof.lee@northfield.localhost": Role.OWNER, "ta.kim@northfield.localhost": Role.ADMIN},
    ),
]


def _user_ensure(email: str, password: str, staff: bool) -> User:
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        user = User.objects.create_user(email=email, password=password, is_staff=staff)
    EmailAddress.objects.update_or_create(user=user, email=email, defaults={"verified": True, "primary": True})
    personal_organization_ensure(user=user)
    return user


@transaction.atomic
def accounts_demo_load() -> None:
    users = {email: _user_ensure(email, password, staff) for email, password, staff in DEMO_USERS}
    for name, kind, parent_name, roles in DEMO_ORGS:
        organization = Organization.objects.filter(name=name, kind=kind).first()
        owner_email = next(email for email, role in roles.items() if role == Role.OWNER)
        if organization is None:
            parent = Organization.objects.get(name=parent_name) if parent_name else None
            organization = organization_create(user=users[owner_email], name=name, kind=kind, parent=parent)
        for email, role in roles.items():
            Membership.objects.get_or_create(organization=organization, user=users[email], defaults={"role": role})
