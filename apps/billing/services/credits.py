"""Credits: grants an organization spends before its card is charged, and their application to
invoices (soonest-expiring first, never more than a grant's remainder or the invoice's subtotal)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal.ui.money import money_format

from ..live import billing_changed_on_commit
from ..models import BillingAccount, BillingEvent, CreditApplication, CreditGrant, CreditKind, Invoice
from ..money import money_quantum
from ..selectors.credits import credit_applications_plan, credit_grants_usable


def _amount_clean(amount, currency: str) -> Decimal:
    try:
        value = Decimal(str(amount))
    except (InvalidOperation, ValueError, TypeError) as exc:
        raise ValidationError({"amount": "Enter an amount such as 25.00."}) from exc
    if not value.is_finite() or value <= 0:
        raise ValidationError({"amount": "A credit must be more than zero."})
    if value != value.quantize(money_quantum(currency)):
        raise ValidationError({"amount": f"Give the amount in whole cents of {currency}, e.g. 25.00."})
    return value


def credit_grant_create(
    *,
    account: BillingAccount,
    kind: str,
    amount: Decimal,
    description: str,
    expires_at: datetime | None = None,
    stripe_payment_intent_id: str | None = None,
    created_by=None,
) -> CreditGrant:
    """Grant credit to `account`. With `stripe_payment_intent_id` (a paid top-up) it is idempotent:
    a webhook delivered twice, or a retried task, finds the first grant instead of adding one."""
    if kind not in CreditKind.values:
        raise ValidationError({"kind": f"Unknown kind of credit: {kind}."})
    value = _amount_clean(amount, account.currency)
    description = (description or "").strip()
    if not description:
        raise ValidationError({"description": "Say what the credit is for."})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    if stripe_payment_intent_id:
        existing = CreditGrant.objects.filter(stripe_payment_intent_id=stripe_payment_intent_id).first()
        if existing is not None:
            return existing
    try:
        with transaction.atomic():
            grant = CreditGrant.objects.create(
                account=account,
                kind=kind,
                amount=value,
                currency=account.currency,
                description=description[:300],
                expires_at=expires_at,
                stripe_payment_intent_id=stripe_payment_intent_id or None,
                created_by=created_by,
            )
            BillingEvent.objects.create(
                account=account,
                kind="credit.granted",
                message=f"{CreditKind(kind).label} of {money_format(value, account.currency)}: {description}"[:500],
            )
        billing_changed_on_commit(organization_id=account.pk)
    except IntegrityError:
        # The same top-up recorded concurrently: the unique payment intent id kept one grant.
        if stripe_payment_intent_id:
            return CreditGrant.objects.get(stripe_payment_intent_id=stripe_payment_intent_id)
        raise
    return grant


def credits_apply(*, invoice: Invoice, up_to: Decimal) -> Decimal:
    """Apply the account's usable grants to `invoice`, soonest-expiring first, up to `up_to`.
    A grant counts if it was still valid during the invoiced period. The caller holds the billing
    account's row lock (invoices of one account are built one at a time), so two invoices never
    spend the same remainder. Returns the amount applied."""
    if up_to <= 0:
        return Decimal("0.00")
    usable = credit_grants_usable(account=invoice.account, valid_after=invoice.period_start)
    plan = credit_applications_plan(usable=usable, up_to=up_to)
    CreditApplication.objects.bulk_create(
        [CreditApplication(grant=grant.grant, invoice=invoice, amount=take) for grant, take in plan]
    )
    return sum((take for _, take in plan), Decimal("0.00"))
