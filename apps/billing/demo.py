"""Demo billing for the run command: credits (and the default cap) so that the demo logins can
launch a notebook at once, with no card to enter first. Idempotent: safe to load on every start."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from apps.accounts.models import Organization, OrganizationKind

from .models import Budget, CreditGrant, CreditKind
from .services.accounts import billing_account_get_or_create
from .services.credits import credit_grant_create

PROMOTION = "Welcome credit (demo)"
GRANT = "Teaching grant (demo)"
# Which demo organizations get what: every one that a demo login launches in.
DEMO_CREDITS = [
    # organization name, kind, credit kind, description, amount, days valid
    ("Acme AI", OrganizationKind.COMPANY, CreditKind.PROMOTION, PROMOTION, Decimal("50.00"), 90),
    ("Northfield University", OrganizationKind.UNIVERSITY, CreditKind.GRANT, GRANT, Decimal("500.00"), 365),
    ("CS 484: Deep Learning Systems", OrganizationKind.COURSE, CreditKind.GRANT, GRANT, Decimal("200.00"), 180),
]
# A company budget, so the overview has a bar to show: mail at 50/80/100 %, launches refused at 100 %.
DEMO_BUDGETS = [("Acme AI", OrganizationKind.COMPANY, Decimal("500.00"))]
# Personal organizations of these logins get the same welcome credit (and, as any new personal
# organization, the default monthly cap when their billing account is created).
DEMO_PERSONAL = ["demo@neocloud.localhost", "operator@neocloud.localhost"]


def _credit_ensure(organization: Organization, kind: str, description: str, amount: Decimal, days: int) -> None:
    account = billing_account_get_or_create(organization=organization)
    now = timezone.now()
    live = CreditGrant.objects.filter(account=account, description=description, expires_at__gt=now)
    if not live.exists():  # a grant that expired is renewed, so an old demo database still launches
        credit_grant_create(
            account=account,
            kind=kind,
            amount=amount,
            description=description,
            expires_at=now + timedelta(days=days),
        )


@transaction.atomic
def billing_demo_load() -> None:
    for name, org_kind, kind, description, amount, days in DEMO_CREDITS:
        organization = Organization.objects.filter(name=name, kind=org_kind).first()
        if organization is not None:
            _credit_ensure(organization, kind, description, amount, days)
    for name, org_kind, amount in DEMO_BUDGETS:
        organization = Organization.objects.filter(name=name, kind=org_kind).first()
        if organization is not None:
            account = billing_account_get_or_create(organization=organization)
            Budget.objects.get_or_create(
                organization=organization,
                project=None,
                defaults={"monthly_amount": amount, "currency": account.currency, "hard_cap": True},
            )
    for email in DEMO_PERSONAL:
        organization = Organization.objects.filter(
            kind=OrganizationKind.PERSONAL, memberships__user__email__iexact=email, memberships__role="owner"
        ).first()
        if organization is not None:
            _credit_ensure(organization, CreditKind.PROMOTION, PROMOTION, Decimal("50.00"), 90)
