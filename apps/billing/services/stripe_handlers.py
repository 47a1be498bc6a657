"""What each Stripe event does here: the dispatch table of the webhook endpoint.

A handler gets the event's object (`data.object`) and the stored WebhookEvent, runs inside the
transaction that marks the event processed, and raises to have the event retried. An event about
something we do not know (another environment's customer, a card already removed) is done, not
failed: retrying would not make it known.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils import timezone

from ..models import BillingAccount, BillingEvent, CreditGrant, CreditKind, Invoice, InvoiceStatus, PaymentMethod
from ..money import money_format, money_from_minor
from ..stripe_api import stripe_client
from .cards import account_for_customer, card_attach, card_detached_sync, card_record
from .standing import account_standing_payment_failed, account_standing_restore

logger = logging.getLogger(__name__)
TOPUP = "topup"  # metadata "kind" of the PaymentIntents that buy credits


def _moment(timestamp) -> datetime | None:
    return datetime.fromtimestamp(int(timestamp), tz=UTC) if timestamp else None


def _note(account: BillingAccount, kind: str, message: str) -> None:
    BillingEvent.objects.create(account=account, kind=kind, message=message[:500])


# --- cards ---------------------------------------------------------------------------------------


def setup_intent_succeeded(obj: dict, event) -> None:
    """Record the card if the page's own confirmation never reached us (closed tab, lost request)."""
    account = account_for_customer(obj.get("customer"))
    payment_method_id = obj.get("payment_method")
    if account is None or not payment_method_id or obj.get("status") != "succeeded":
        return
    if PaymentMethod.objects.filter(stripe_payment_method_id=payment_method_id).exists():
        return  # the page did it (and the card may have been removed since: leave it so)
    try:
        card_attach(account=account, stripe_payment_method_id=payment_method_id)
    except ValidationError as refused:
        _note(account, "card_refused", f"A card confirmed at Stripe could not be saved: {' '.join(refused.messages)}")


def payment_method_attached(obj: dict, event) -> None:
    account = account_for_customer(obj.get("customer"))
    if account is None or obj.get("type") != "card":
        return
    # Stripe's current state, not the event's: an old event must not bring back a removed card.
    current = stripe_client().v1.payment_methods.retrieve(obj["id"])
    if current.customer == account.stripe_customer_id:
        card_record(account=account, payment_method=current)


def payment_method_detached(obj: dict, event) -> None:
    card_detached_sync(stripe_payment_method_id=obj["id"])


# --- invoices and payment standing ---------------------------------------------------------------


def _invoice_failure_reason(obj: dict) -> str:
    payment_intent_id = obj.get("payment_intent")
    if payment_intent_id:
        intent = stripe_client().v1.payment_intents.retrieve(payment_intent_id)
        error = getattr(intent, "last_payment_error", None)
        if error and error.get("message"):
            return str(error["message"])
    return "the card was declined"


def invoice_paid(obj: dict, event) -> None:
    from .invoicing import invoice_paid_record

    paid_at = (
        _moment((obj.get("status_transitions") or {}).get("paid_at"))
        or _moment(event.payload.get("created"))
        or timezone.now()
    )
    invoice = invoice_paid_record(stripe_invoice_id=obj["id"], paid_at=paid_at)
    account = invoice.account if invoice is not None else account_for_customer(obj.get("customer"))
    if account is not None:
        account_standing_restore(account=account)


def invoice_payment_failed(obj: dict, event) -> None:
    from .invoicing import invoice_payment_failed_record

    before = Invoice.objects.filter(stripe_invoice_id=obj["id"]).values_list("status", flat=True).first()
    invoice = invoice_payment_failed_record(stripe_invoice_id=obj["id"], reason=_invoice_failure_reason(obj))
    if before in (InvoiceStatus.PAYMENT_FAILED, InvoiceStatus.PAID):
        # Already dealt with (the push saw the decline in Stripe's answer), or a late failure of
        # an attempt that a later payment made good.
        return
    account = invoice.account if invoice is not None else account_for_customer(obj.get("customer"))
    if account is not None:
        account_standing_payment_failed(account=account, invoice=invoice)


# --- top-ups and refunds -------------------------------------------------------------------------


def _topup_account(obj: dict) -> BillingAccount | None:
    metadata = obj.get("metadata") or {}
    if metadata.get("kind") != TOPUP or obj.get("invoice"):
        return None
    account = account_for_customer(obj.get("customer"))
    if account is None or str(account.pk) != str(metadata.get("organization_id")):
        return None
    return account


def payment_intent_succeeded(obj: dict, event) -> None:
    """A top-up was paid: only now do its credits exist (never on the browser's word)."""
    from .credits import credit_grant_create

    account = _topup_account(obj)
    if account is None:
        return
    amount = money_from_minor(int(obj.get("amount_received") or obj["amount"]), obj["currency"].upper())
    user_id = (obj.get("metadata") or {}).get("user_id")
    buyer = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    credit_grant_create(
        account=account,
        kind=CreditKind.TOPUP,
        amount=amount,
        description=f"Top-up by card ({obj['id']})",
        stripe_payment_intent_id=obj["id"],
        created_by=buyer,
    )
    _note(account, "topup_paid", f"Top-up of {money_format(amount, obj['currency'])} paid: credits added.")


def payment_intent_payment_failed(obj: dict, event) -> None:
    account = _topup_account(obj)
    if account is None:
        return
    amount = money_from_minor(int(obj["amount"]), obj["currency"].upper())
    error = (obj.get("last_payment_error") or {}).get("message") or "the card was declined"
    _note(
        account,
        "topup_failed",
        f"Top-up of {money_format(amount, obj['currency'])} failed: {error}. No credits were added.",
    )


def charge_refunded(obj: dict, event) -> None:
    """Record the refund. If it refunds a top-up, its credits should shrink by the unspent part;
    the credits code offers no correction for that (yet), so the note says an operator must."""
    account = account_for_customer(obj.get("customer"))
    if account is None:
        return
    currency = obj["currency"].upper()
    refunded = money_from_minor(int(obj.get("amount_refunded") or 0), currency)
    message = f"Charge {obj['id']} refunded: {money_format(refunded, currency)} in all."
    grant = None
    if obj.get("payment_intent"):
        grant = CreditGrant.objects.filter(
            account=account, kind=CreditKind.TOPUP, stripe_payment_intent_id=obj["payment_intent"]
        ).first()
    if grant is not None:
        message += (
            f" It paid top-up grant #{grant.pk} ({money_format(grant.amount, grant.currency)}); its unspent credit"
            " was NOT reduced automatically (no credit correction exists yet): an operator must review it."
        )
    _note(account, "refund", message)


WEBHOOK_HANDLERS: dict[str, Callable[[dict, object], None]] = {
    "setup_intent.succeeded": setup_intent_succeeded,
    "payment_method.attached": payment_method_attached,
    "payment_method.detached": payment_method_detached,
    "invoice.paid": invoice_paid,
    "invoice.payment_succeeded": invoice_paid,
    "invoice.payment_failed": invoice_payment_failed,
    "payment_intent.succeeded": payment_intent_succeeded,
    "payment_intent.payment_failed": payment_intent_payment_failed,
    "charge.refunded": charge_refunded,
}
