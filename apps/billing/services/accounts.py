"""The billing account of an organization: created on first need, one per organization."""

from __future__ import annotations

from django.conf import settings

from apps.accounts.models import Organization, OrganizationKind

from ..models import BillingAccount, PaymentTerms


def billing_account_get_or_create(*, organization: Organization) -> BillingAccount:
    """Universities and their courses run on credits until an operator gives them invoice terms;
    everyone else pays by card."""
    terms = (
        PaymentTerms.PREPAID
        if organization.kind in (OrganizationKind.UNIVERSITY, OrganizationKind.COURSE)
        else (PaymentTerms.CARD)
    )
    account, _ = BillingAccount.objects.get_or_create(
        organization=organization, defaults={"terms": terms, "currency": settings.BILLING["CURRENCY"]}
    )
    return account
