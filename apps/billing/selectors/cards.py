"""Reads of an account's cards. Callers have already scoped the account to the caller's organization."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone

from ..models import BillingAccount, PaymentMethod


def _not_expired(at: datetime) -> Q:
    # A card is valid through the last day of its expiry month.
    return Q(exp_year__gt=at.year) | Q(exp_year=at.year, exp_month__gte=at.month)


def payment_method_usable_get(*, account: BillingAccount, at: datetime | None = None) -> PaymentMethod | None:
    """The card Stripe charges for this account: the default one, still attached and not expired."""
    at = timezone.localtime(at or timezone.now())
    return (
        PaymentMethod.objects.filter(account=account, is_default=True, detached_at__isnull=True)
        .filter(_not_expired(at))
        .first()
    )


def cards_list(*, account: BillingAccount) -> QuerySet[PaymentMethod]:
    """Attached cards, the default first."""
    return PaymentMethod.objects.filter(account=account, detached_at__isnull=True).order_by(
        "-is_default", "-created_at", "-id"
    )


def card_get(*, account: BillingAccount, card_id: int) -> PaymentMethod:
    """One attached card of `account`; another account's card answers like a missing one."""
    card = cards_list(account=account).filter(pk=card_id).first()
    if card is None:
        raise Http404("No such card.")
    return card


def card_is_expired(*, card: PaymentMethod, at: datetime | None = None) -> bool:
    at = timezone.localtime(at or timezone.now())
    return (card.exp_year, card.exp_month) < (at.year, at.month)
