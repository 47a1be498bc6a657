"""What each Stripe event does here: the dispatch table of the webhook endpoint.

A handler gets the event's object (`data.object`) and the stored WebhookEvent, runs inside the
transaction that marks the event processed, and raises to have the event retried. An event about
something we do not know (another environment's customer, a card already removed) is done, not
failed: retrying would not make it known.

Every handler is idempotent per state of its Stripe object, not only per event id: Stripe may
tell us the same thing under several event ids (invoice.paid and invoice.payment_succeeded, a
regenerated event), and the second must change nothing (no note, credit, status change, email
or live push). Each handler therefore first asks whether what the object says is already
recorded: the grant of a paid top-up, a card already on file, an invoice already paid or
failed, a note already written for that charge, attempt or refunded amount (`_note_once`). The
webhook service processes events about one object one at a time, so these checks do not race.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils import timezone

from portal.ui.money import money_format

from ..models import (
    BillingAccount,
    BillingEvent,
    CreditGrant,
    CreditKind,
    Invoice,
    InvoiceStatus,
    PaymentMethod,
    WebhookEvent,
    WebhookEventStatus,
)
from ..money import money_from_minor
from ..stripe_api import stripe_client
from .cards import account_for_customer, card_attach, card_detached_sync, card_record
from .standing import account_standing_payment_failed, account_standing_restore

logger = logging.getLogger(__name__)
TOPUP = "topup"  # metadata "kind" of the PaymentIntents that buy credits


def _moment(timestamp) -> datetime | None:
    return datetime.fromtimestamp(int(timestamp), tz=UTC) if timestamp else None


def _note_once(account: BillingAccount, kind: str, message: str, *, ref: str) -> bool:
    """Write the note unless one of this kind about `ref` (the object and the state the note is
    about) exists. The reference ends the message, so the history shows what it was about.
    Returns whether it was written."""
    tag = f" [{ref}]"
    if BillingEvent.objects.filter(account=account, kind=kind, message__endswith=tag).exists():
        return False
    BillingEvent.objects.create(account=account, kind=kind, message=message[: 500 - len(tag)] + tag)
    return True


def _state_seen_before(event, obj: dict, *, types: tuple[str, ...], same: tuple[str, ...]) -> bool:
    """Whether another event of `types` about this object, with the same values of `same`, was
    processed already. For objects that leave no row of ours to compare with (an invoice we did
    not create); events of one object are few, so comparing them here is cheap once found."""
    earlier = WebhookEvent.objects.filter(
        type__in=types, status=WebhookEventStatus.PROCESSED, payload__data__object__id=obj.get("id")
    ).exclude(pk=event.pk)
    wanted = [obj.get(field) for field in same]
    for payload in earlier.values_list("payload", flat=True):
        seen = (payload.get("data") or {}).get("object") or {}
        if [seen.get(field) for field in same] == wanted:
            return True
    return False


# --- cards ---------------------------------------------------------------------------------------


def setup_intent_succeeded(obj: dict, event) -> None:
    """Record the card if the page's own confirmation never reached us (closed tab, lost request)."""
    account = account_for_customer(obj.get("customer"))
    payment_method_id = obj.get("payment_method")
    if account is None or not payment_method_id or obj.get("status") != "succeeded":
        return
    if PaymentMethod.objects.filter(stripe_payment_method_id=payment_method_id).exists():
        return  # the page (or an earlier event) did it; the card may have been removed since: leave it so
    if BillingEvent.objects.filter(account=account, kind="card_refused", message__endswith=f"[{obj['id']}]").exists():
        return  # refused already under another event id: asking again would only repeat the note
    try:
        card_attach(account=account, stripe_payment_method_id=payment_method_id)
    except ValidationError as refused:
        _note_once(
            account,
            "card_refused",
            f"A card confirmed at Stripe could not be saved: {' '.join(refused.messages)}",
            ref=obj["id"],
        )


def payment_method_attached(obj: dict, event) -> None:
    account = account_for_customer(obj.get("customer"))
    if account is None or obj.get("type") != "card":
        return
    if PaymentMethod.objects.filter(
        stripe_payment_method_id=obj.get("id"), account=account, detached_at__isnull=True
    ).exists():
        return  # on file already (the page, setup_intent.succeeded or an earlier event)
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
    """invoice.paid and invoice.payment_succeeded both come for one payment: the first moves
    the invoice to PAID and restores the account's standing; every later one finds it PAID (as
    does the webhook after the reconciler or dunning recorded the payment: those restore the
    standing themselves, in the same transaction) and does nothing."""
    from .invoicing import invoice_paid_record

    before = Invoice.objects.filter(stripe_invoice_id=obj["id"]).values_list("status", flat=True).first()
    if before == InvoiceStatus.PAID:
        return
    if before is None and _state_seen_before(event, obj, types=PAID_TYPES, same=("status",)):
        return
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
    if before in (InvoiceStatus.PAYMENT_FAILED, InvoiceStatus.PAID, InvoiceStatus.VOID):
        # Already dealt with (the push saw the decline in Stripe's answer, or an earlier event
        # about this failure), or a late failure of an attempt that a later payment made good.
        return
    if before is None and _state_seen_before(
        event, obj, types=("invoice.payment_failed",), same=("attempt_count", "payment_intent")
    ):
        return  # an invoice we did not create: its earlier event about this attempt counted
    invoice = invoice_payment_failed_record(stripe_invoice_id=obj["id"], reason=_invoice_failure_reason(obj))
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
    if account is None or CreditGrant.objects.filter(stripe_payment_intent_id=obj["id"]).exists():
        return  # not a top-up of ours, or its credits exist already (another event id, a retry)
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
    _note_once(
        account, "topup_paid", f"Top-up of {money_format(amount, obj['currency'])} paid: credits added.", ref=obj["id"]
    )


def payment_intent_payment_failed(obj: dict, event) -> None:
    account = _topup_account(obj)
    if account is None or CreditGrant.objects.filter(stripe_payment_intent_id=obj["id"]).exists():
        return  # not ours, or a late word about an attempt that a later one made good
    amount = money_from_minor(int(obj["amount"]), obj["currency"].upper())
    failure = obj.get("last_payment_error") or {}
    error = failure.get("message") or "the card was declined"
    # One note per failed attempt: an attempt is its charge (or, without one, its error).
    attempt = failure.get("charge") or _charge_id(obj.get("latest_charge")) or failure.get("code") or error
    _note_once(
        account,
        "topup_failed",
        f"Top-up of {money_format(amount, obj['currency'])} failed: {error}. No credits were added.",
        ref=f"{obj['id']} {attempt}"[:120],
    )


def _charge_id(charge) -> str | None:
    if isinstance(charge, dict):  # expanded (localstripe does)
        return charge.get("id")
    return charge or None


def charge_refunded(obj: dict, event) -> None:
    """Record the refund. If it refunds a top-up, its credits should shrink by the unspent part;
    the credits code offers no correction for that (yet), so the note says an operator must."""
    account = account_for_customer(obj.get("customer"))
    if account is None:
        return
    currency = obj["currency"].upper()
    refunded_minor = int(obj.get("amount_refunded") or 0)
    refunded = money_from_minor(refunded_minor, currency)
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
    # One note per refunded total of the charge: a further partial refund raises the total and
    # gets its own; the same total told again (another event id) is not news.
    _note_once(account, "refund", message, ref=f"{obj['id']} {refunded_minor}")


PAID_TYPES = ("invoice.paid", "invoice.payment_succeeded")
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
