"""The billing account of an organization: created on first need, one per organization."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from apps.accounts.models import Organization, OrganizationKind

from ..models import BillingAccount, PaymentTerms


def billing_account_get_or_create(*, organization: Organization) -> BillingAccount:
    """Universities and their courses run on credits until an operator gives them invoice terms;
    everyone else pays by card."""
    account = BillingAccount.objects.filter(organization=organization).first()
    if account is not None:
        return account  # the common case: one query, no savepoint (this runs inside every launch)
    terms = (
        PaymentTerms.PREPAID
        if organization.kind in (OrganizationKind.UNIVERSITY, OrganizationKind.COURSE)
        else (PaymentTerms.CARD)
    )
    with transaction.atomic():
        account, created = BillingAccount.objects.get_or_create(
            organization=organization, defaults={"terms": terms, "currency": settings.BILLING["CURRENCY"]}
        )
        if created:
            # Here, not when the organization is created: every organization gets its account (and a
            # personal one its default cap) exactly once, including those made before billing existed.
            from .budgets import budget_default_create

            budget_default_create(account=account)
    return account


def billing_account_lock(*, account: BillingAccount) -> BillingAccount:
    """The account's row, locked for this transaction (portal/db.py's first lock), fresh.

    FOR NO KEY UPDATE, as the lock order says for rows others point at: it still serialises
    every writer of the account (card changes, invoice builds, standing moves), but does not
    block the foreign-key checks of rows being inserted that reference it."""
    return BillingAccount.objects.select_for_update(no_key=True).get(pk=account.pk)

