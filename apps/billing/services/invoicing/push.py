"""Pushing an invoice to Stripe: an invoice item per line (credits as a negative item), the
invoice, finalize, pay. Every request carries an Idempotency-Key derived from the invoice's own
key, and every Stripe id is saved the moment it is known, so a retry after an outage (before the
request, or after it with the answer lost) trusts what is stored and repeats the rest with the same
keys: Stripe answers a repeated key with the first answer and no second effect.

Not one transaction on purpose: each Stripe id is committed as soon as it exists, so a crash
between two requests loses nothing. Invoices of one account are pushed one at a time, oldest first
(a PostgreSQL advisory lock), because a Stripe invoice takes the customer's pending items.

PAID comes from Stripe's invoice.paid webhook (engineer A's handler calls invoice_paid_record), or
from the reconciler reading the invoice back; the pay answer only reports a decline, which Stripe
(and localstripe) may answer without a failure event.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime

import stripe
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from ...models import Invoice, InvoiceLine, InvoiceStatus, PaymentTerms
from ...money import money_to_minor
from ...stripe_api import stripe_client
from .status import invoice_paid_record, invoice_payment_failed_mark, invoice_transition

St = InvoiceStatus
_LOCK_NAMESPACE = 7301  # advisory lock class of "pushing invoices of account N"


class InvoicePushBusy(Exception):
    """Another worker is pushing this account's invoices; retry shortly."""


class InvoicePushError(Exception):
    """Stripe answered in a way a retry cannot fix (no customer, totals disagree): kept on the invoice."""


@contextmanager
def _account_push_lock(account_id: int):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_NAMESPACE, account_id % 2**31])
        if not cursor.fetchone()[0]:
            raise InvoicePushBusy(f"invoices of account {account_id} are being pushed")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_NAMESPACE, account_id % 2**31])


def invoice_stripe_options(invoice: Invoice, step: str) -> dict:
    """Request options for one step of this invoice at Stripe: its idempotency key is the invoice's
    own key plus the step, so a retry of the step repeats the key and Stripe answers it once."""
    return {"idempotency_key": f"{invoice.idempotency_key}-{step}"}


def _error_keep(invoice: Invoice, error: Exception | str) -> None:
    Invoice.objects.filter(pk=invoice.pk).update(last_error=str(error)[:500])


def invoice_push_run(*, invoice_id: int) -> Invoice:
    """Push `invoice` (and any older unpushed invoice of its account first) to Stripe and charge it.
    Raises STRIPE_TRANSIENT_ERRORS / InvoicePushBusy for the task to retry; keeps anything else as
    the invoice's last_error."""
    invoice = Invoice.objects.select_related("account").get(pk=invoice_id)
    if invoice.status not in (St.DRAFT, St.OPEN) or invoice.total <= 0:
        return invoice
    with _account_push_lock(invoice.account_id):
        older = Invoice.objects.filter(
            account_id=invoice.account_id, status=St.DRAFT, total__gt=0, created_at__lte=invoice.created_at
        ).exclude(pk=invoice.pk)
        for earlier in older.order_by("created_at", "id"):
            _push_one(Invoice.objects.select_related("account").get(pk=earlier.pk))
        _push_one(Invoice.objects.select_related("account").get(pk=invoice.pk))
    return Invoice.objects.get(pk=invoice.pk)


def _push_one(invoice: Invoice) -> None:
    if invoice.status not in (St.DRAFT, St.OPEN):
        return
    account = invoice.account
    Invoice.objects.filter(pk=invoice.pk).update(push_attempts=F("push_attempts") + 1)
    if not account.stripe_customer_id:
        _error_keep(invoice, "The account has no Stripe customer yet: add a card.")
        return
    client = stripe_client()
    try:
        stripe_invoice = _stripe_invoice_ensure(client, invoice)
        if stripe_invoice.status == "draft":
            stripe_invoice = client.v1.invoices.finalize_invoice(
                stripe_invoice.id, options=invoice_stripe_options(invoice, "finalize")
            )
        invoice_transition(
            invoice_id=invoice.pk,
            to_status=St.OPEN,
            expected_from=[St.DRAFT],
            message="finalized at Stripe",
            finalized_at=timezone.now(),
            last_error="",
        )
        if account.terms == PaymentTerms.INVOICE:
            return  # paid by bank transfer against the finalized invoice; Stripe reports it
        if stripe_invoice.status == "open":
            _pay(client, invoice, stripe_invoice.id)
    except InvoicePushError as error:
        _error_keep(invoice, error)
    except stripe.InvalidRequestError as error:
        # A bad request is an answer, not an outage: keep it for an operator, do not retry.
        _error_keep(invoice, error.user_message or str(error))
    except Exception as error:
        _error_keep(invoice, error)
        raise


def _stripe_invoice_ensure(client: stripe.StripeClient, invoice: Invoice):
    if invoice.stripe_invoice_id:
        remote = client.v1.invoices.retrieve(invoice.stripe_invoice_id)
    else:
        remote = _stripe_invoice_create(client, invoice)
    expected = money_to_minor(invoice.total, invoice.currency)
    if remote.status == "draft" and remote.total != expected:
        # Someone else's pending item (or a lost one of ours) slipped in: never finalize a wrong bill.
        raise InvoicePushError(
            f"Stripe invoice {remote.id} totals {remote.total} minor units, ours {expected}: not finalized."
        )
    return remote


def _stripe_invoice_create(client: stripe.StripeClient, invoice: Invoice):
    currency = invoice.currency.lower()
    customer = invoice.account.stripe_customer_id
    for line in invoice.lines.filter(stripe_invoice_item_id__isnull=True).order_by("id"):
        item = client.v1.invoice_items.create(
            params={
                "customer": customer,
                "amount": money_to_minor(line.amount, invoice.currency),
                "currency": currency,
                "description": _item_description(line),
                "metadata": {"portal_invoice_id": str(invoice.pk), "portal_line_id": str(line.pk)},
            },
            options=invoice_stripe_options(invoice, f"line-{line.pk}"),
        )
        InvoiceLine.objects.filter(pk=line.pk).update(stripe_invoice_item_id=item.id)
    created = client.v1.invoices.create(
        params={
            "customer": customer,
            "description": f"{invoice.number} ({invoice.get_kind_display().lower()})",
            "metadata": {"portal_invoice_id": str(invoice.pk), "number": invoice.number},
            # Real Stripe leaves pending items off a new invoice unless asked; localstripe_plus
            # takes them regardless and ignores both parameters.
            "pending_invoice_items_behavior": "include",
            "auto_advance": False,
        },
        options=invoice_stripe_options(invoice, "invoice"),
    )
    Invoice.objects.filter(pk=invoice.pk).update(stripe_invoice_id=created.id)
    invoice.stripe_invoice_id = created.id
    return created


def _item_description(line: InvoiceLine) -> str:
    if line.instance_id is None:
        return line.description
    hours = f"{line.seconds} s"
    return f"{line.description} · {line.flavor_name} · {hours} at {line.hourly_amount}/h"


def _pay(client: stripe.StripeClient, invoice: Invoice, stripe_invoice_id: str) -> None:
    try:
        answer = client.v1.invoices.pay(stripe_invoice_id, options=invoice_stripe_options(invoice, "pay"))
    except stripe.CardError as error:
        _payment_failed(invoice, stripe_invoice_id, error.user_message or "The card was declined.")
        return
    if answer.status == "open":
        reason = _decline_reason(client, answer)
        if reason:
            _payment_failed(invoice, stripe_invoice_id, reason)


def _decline_reason(client: stripe.StripeClient, stripe_invoice) -> str | None:
    intent_id = getattr(stripe_invoice, "payment_intent", None)
    if not intent_id:
        return None
    intent = client.v1.payment_intents.retrieve(intent_id if isinstance(intent_id, str) else intent_id.id)
    error = getattr(intent, "last_payment_error", None)
    if not error:
        return None
    return getattr(error, "message", None) or "The card was declined."


@transaction.atomic
def _payment_failed(invoice: Invoice, stripe_invoice_id: str, reason: str) -> None:
    """Stripe may not send invoice.payment_failed for a synchronous decline, so the account's
    standing follows from here too, in the same transaction as the invoice's status."""
    from ..standing import account_standing_payment_failed

    failed, changed = invoice_payment_failed_mark(stripe_invoice_id=stripe_invoice_id, reason=reason)
    if changed and failed is not None:
        account_standing_payment_failed(account=failed.account, invoice=failed)


def invoice_stripe_sync(*, invoice_id: int) -> Invoice:
    """Read an open invoice back from Stripe and record what Stripe knows: the repair for a
    webhook that never arrived."""
    invoice = Invoice.objects.select_related("account").get(pk=invoice_id)
    if not invoice.stripe_invoice_id or invoice.status not in (St.OPEN, St.PAYMENT_FAILED):
        return invoice
    remote = stripe_client().v1.invoices.retrieve(invoice.stripe_invoice_id)
    if remote.status == "paid":
        paid_ts = (remote.to_dict().get("status_transitions") or {}).get("paid_at")
        paid_at = datetime.fromtimestamp(paid_ts, tz=UTC) if paid_ts else timezone.now()
        from ..standing import account_standing_restore

        with transaction.atomic():
            paid = invoice_paid_record(stripe_invoice_id=invoice.stripe_invoice_id, paid_at=paid_at)
            # The webhook that never came would have restored the account's standing too.
            account_standing_restore(account=invoice.account)
        return paid or invoice
    if remote.status == "void":
        voided = invoice_transition(
            invoice_id=invoice.pk,
            to_status=St.VOID,
            expected_from=[St.OPEN, St.PAYMENT_FAILED],
            message="void at Stripe",
        )
        return voided or invoice
    return invoice
