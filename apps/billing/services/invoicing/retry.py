"""Paying a failed invoice again once the customer has a card that may work: the way out of
dunning ("paying restores everything") without waiting for an operator."""

from __future__ import annotations

import stripe
from django.db import transaction
from django.utils import timezone

from ...models import BillingAccount, Invoice, InvoiceStatus
from ...selectors.cards import payment_method_usable_get
from ...stripe_api import stripe_client
from .push import invoice_stripe_options
from .status import invoice_paid_record


def invoices_failed_pay_retry(*, account_id: int) -> list[Invoice]:
    """Ask Stripe to pay each PAYMENT_FAILED invoice of the account with its current default card.

    The idempotency key names the card: a retry with the card that already failed replays that
    failure instead of charging again, and a new card gets one fresh attempt. An invoice paid here
    is recorded at once (the invoice.paid webhook that follows finds it paid and changes nothing).
    Returns the invoices as they are afterwards."""
    account = BillingAccount.objects.get(pk=account_id)
    card = payment_method_usable_get(account=account)
    if card is None:
        return []
    client = stripe_client()
    results = []
    failed = Invoice.objects.filter(
        account=account, status=InvoiceStatus.PAYMENT_FAILED, stripe_invoice_id__isnull=False
    )
    for invoice in failed.order_by("period_end", "pk"):
        options = invoice_stripe_options(invoice, f"pay-{card.stripe_payment_method_id}")
        try:
            answer = client.v1.invoices.pay(invoice.stripe_invoice_id, options=options)
        except stripe.CardError as error:
            Invoice.objects.filter(pk=invoice.pk).update(last_error=(error.user_message or str(error))[:500])
            results.append(Invoice.objects.get(pk=invoice.pk))
            continue
        if answer.status == "paid":
            results.append(_paid(invoice=invoice, account=account))
        else:
            results.append(Invoice.objects.get(pk=invoice.pk))
    return results


@transaction.atomic
def _paid(*, invoice: Invoice, account: BillingAccount) -> Invoice:
    from ..standing import account_standing_restore

    paid = invoice_paid_record(stripe_invoice_id=invoice.stripe_invoice_id, paid_at=timezone.now())
    account_standing_restore(account=account)
    return paid or invoice
