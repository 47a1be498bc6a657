"""Reads of credits: what is left of each grant, and an account's balance."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import DecimalField, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from ..models import BillingAccount, CreditGrant

_ZERO = Value(Decimal(0), output_field=DecimalField(max_digits=14, decimal_places=2))


@dataclass(frozen=True)
class GrantRemaining:
    grant: CreditGrant
    remaining: Decimal


def _with_used(grants: QuerySet[CreditGrant]) -> QuerySet[CreditGrant]:
    return grants.annotate(used=Coalesce(Sum("applications__amount"), _ZERO))


def credit_grants_list(*, account: BillingAccount) -> QuerySet[CreditGrant]:
    """Every grant of the account with `used` (applied so far), soonest-expiring first."""
    return _with_used(CreditGrant.objects.filter(account=account)).order_by(
        F("expires_at").asc(nulls_last=True), "created_at", "id"
    )


def credit_grants_usable(*, account: BillingAccount, valid_after: datetime) -> list[GrantRemaining]:
    """Grants still valid after `valid_after` with something left, in the order they are spent:
    soonest-expiring first, so nothing a customer was given expires while newer credit is used."""
    grants = credit_grants_list(account=account).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=valid_after))
    return [GrantRemaining(g, g.amount - g.used) for g in grants if g.amount > g.used]


def credit_balance_get(*, account: BillingAccount, at: datetime | None = None) -> Decimal:
    """Unexpired grants at `at` (default now) less what was applied from them."""
    at = at or timezone.now()
    return sum((g.remaining for g in credit_grants_usable(account=account, valid_after=at)), Decimal("0.00"))


def credit_applications_plan(*, usable: list[GrantRemaining], up_to: Decimal) -> list[tuple[GrantRemaining, Decimal]]:
    """What an invoice of `up_to` takes from each of `usable` (credit_grants_usable's order:
    soonest-expiring first), never more than a grant's remainder. credits_apply writes this; the
    billing overview's preview shows it."""
    plan: list[tuple[GrantRemaining, Decimal]] = []
    applied = Decimal("0.00")
    for grant in usable:
        take = min(grant.remaining, up_to - applied)
        if take <= 0:
            break
        plan.append((grant, take))
        applied += take
    return plan
