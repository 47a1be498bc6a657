"""Cards on file. The card number only ever goes from the browser to Stripe (Elements + a
SetupIntent); we keep what we show (brand, last 4, expiry) and which card is the default.

Stripe calls that are answers (a declined card, an unknown id) become ValidationErrors with
Stripe's message; transient errors (STRIPE_TRANSIENT_ERRORS) propagate, so a webhook event is
retried and a page says "try again". Card changes of one account are serialized by a lock on
its BillingAccount row, so a browser confirmation and a webhook for the same card never race.
"""

from __future__ import annotations

import logging

import stripe
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from ..live import billing_changed_on_commit
from ..models import BillingAccount, Invoice, InvoiceStatus, PaymentMethod
from ..selectors.cards import cards_list
from ..stripe_api import stripe_client
from .accounts import billing_account_lock
from .customers import stripe_customer_ensure, stripe_fresh_key, stripe_idempotency_key

logger = logging.getLogger(__name__)


def stripe_answer_message(error: stripe.StripeError) -> str:
    return getattr(error, "user_message", None) or str(error) or "Stripe refused the request."


def card_setup_intent_create(*, account: BillingAccount) -> stripe.SetupIntent:
    """A SetupIntent for this account's customer: its client secret lets the page confirm a card
    with Stripe directly."""
    customer_id = stripe_customer_ensure(account=account)
    return stripe_client().v1.setup_intents.create(
        params={
            "customer": customer_id,
            "usage": "off_session",
            "payment_method_types": ["card"],
            "metadata": {"organization_id": str(account.pk)},
        },
        options={"idempotency_key": stripe_fresh_key("setup-intent", account.pk)},
    )


def _default_at_stripe(*, customer_id: str, stripe_payment_method_id: str | None) -> None:
    stripe_client().v1.customers.update(
        customer_id,
        params={"invoice_settings": {"default_payment_method": stripe_payment_method_id or ""}},
        options={"idempotency_key": stripe_fresh_key("default-card", customer_id, stripe_payment_method_id or "none")},
    )


def _default_make(*, account: BillingAccount, card: PaymentMethod | None) -> None:
    """Make `card` (or nothing) the default, at Stripe first: if Stripe refuses, nothing changes here."""
    _default_at_stripe(
        customer_id=account.stripe_customer_id, stripe_payment_method_id=card.stripe_payment_method_id if card else None
    )
    # The old default goes first: the database allows one default per account.
    PaymentMethod.objects.filter(account=account, is_default=True).exclude(pk=card.pk if card else None).update(
        is_default=False
    )
    if card is not None:
        PaymentMethod.objects.filter(pk=card.pk).update(is_default=True)
        card.is_default = True
        if Invoice.objects.filter(account=account, status=InvoiceStatus.PAYMENT_FAILED).exists():
            # A new default card is the customer's answer to a failed payment: try it at once.
            from ..tasks.invoicing import invoices_failed_retry

            transaction.on_commit(lambda: invoices_failed_retry.delay(account.pk))
    billing_changed_on_commit(organization_id=account.pk)


@transaction.atomic
def card_record(*, account: BillingAccount, payment_method: stripe.PaymentMethod) -> PaymentMethod:
    """Store (or bring back) a card already attached to the account's customer at Stripe; the
    account's first usable card becomes its default."""
    account = billing_account_lock(account=account)
    details = payment_method["card"]
    fields = {
        "brand": details["brand"] or "card",
        "last4": details["last4"],
        "exp_month": details["exp_month"],
        "exp_year": details["exp_year"],
    }
    card = PaymentMethod.objects.filter(stripe_payment_method_id=payment_method.id).first()
    if card is not None and card.account_id != account.pk:
        raise ValidationError("This card belongs to another account.")
    if card is None:
        card = PaymentMethod.objects.create(account=account, stripe_payment_method_id=payment_method.id, **fields)
    elif card.detached_at is not None:
        PaymentMethod.objects.filter(pk=card.pk).update(detached_at=None, is_default=False, **fields)
        card.refresh_from_db()
    if not PaymentMethod.objects.filter(account=account, is_default=True, detached_at__isnull=True).exists():
        _default_make(account=account, card=card)
    billing_changed_on_commit(organization_id=account.pk)
    return card


def card_attach(*, account: BillingAccount, stripe_payment_method_id: str) -> PaymentMethod:
    """Attach a confirmed card to the account's customer (localstripe, unlike Stripe, does not
    attach on SetupIntent confirmation, and attaching twice is harmless) and store it."""
    customer_id = stripe_customer_ensure(account=account)
    client = stripe_client().v1
    try:
        payment_method = client.payment_methods.retrieve(stripe_payment_method_id)
        if payment_method.customer not in (None, customer_id):
            raise ValidationError("This card belongs to another account.")
        if payment_method.customer is None:
            payment_method = client.payment_methods.attach(
                stripe_payment_method_id,
                params={"customer": customer_id},
                options={"idempotency_key": stripe_idempotency_key("attach", stripe_payment_method_id, customer_id)},
            )
    except (stripe.CardError, stripe.InvalidRequestError) as error:
        raise ValidationError(stripe_answer_message(error)) from error
    if payment_method.type != "card":
        raise ValidationError("Only cards can be saved here.")
    return card_record(account=account, payment_method=payment_method)


def card_setup_confirm(*, account: BillingAccount, setup_intent_id: str) -> PaymentMethod:
    """The page says Stripe confirmed a card: check that with Stripe (the browser is not trusted),
    then attach and store it."""
    setup_intent_id = (setup_intent_id or "").strip()
    if not setup_intent_id.startswith("seti_"):
        raise ValidationError("The card setup is missing; add the card again.")
    try:
        setup_intent = stripe_client().v1.setup_intents.retrieve(setup_intent_id)
    except stripe.InvalidRequestError as error:
        raise ValidationError("Stripe does not know this card setup; add the card again.") from error
    if not account.stripe_customer_id or setup_intent.customer != account.stripe_customer_id:
        raise ValidationError("This card setup belongs to another account.")
    if setup_intent.status != "succeeded" or not setup_intent.payment_method:
        error = getattr(setup_intent, "last_setup_error", None)
        detail = (error or {}).get("message") if error else None
        raise ValidationError(detail or f"The card was not confirmed (Stripe says: {setup_intent.status}). Try again.")
    return card_attach(account=account, stripe_payment_method_id=setup_intent.payment_method)


@transaction.atomic
def card_default_set(*, account: BillingAccount, card: PaymentMethod) -> PaymentMethod:
    account = billing_account_lock(account=account)
    card = PaymentMethod.objects.get(pk=card.pk, account=account)
    if card.detached_at is not None:
        raise ValidationError("This card was removed.")
    if not card.is_default:
        try:
            _default_make(account=account, card=card)
        except stripe.InvalidRequestError as error:
            raise ValidationError(stripe_answer_message(error)) from error
    return card


def _card_forget(*, account: BillingAccount, card: PaymentMethod) -> None:
    """Mark removed; a removed default hands over to the newest remaining card, or to none."""
    was_default = card.is_default
    PaymentMethod.objects.filter(pk=card.pk).update(detached_at=timezone.now(), is_default=False)
    if was_default:
        _default_make(account=account, card=cards_list(account=account).exclude(pk=card.pk).first())
    billing_changed_on_commit(organization_id=account.pk)


@transaction.atomic
def card_remove(*, account: BillingAccount, card: PaymentMethod) -> None:
    account = billing_account_lock(account=account)
    card = PaymentMethod.objects.get(pk=card.pk, account=account)
    if card.detached_at is not None:
        return
    try:
        stripe_client().v1.payment_methods.detach(
            card.stripe_payment_method_id,
            options={"idempotency_key": stripe_idempotency_key("detach", card.stripe_payment_method_id)},
        )
    except stripe.InvalidRequestError:
        # Already detached or gone at Stripe: what we want anyway.
        logger.info("card %s was already detached at Stripe", card.stripe_payment_method_id)
    _card_forget(account=account, card=card)


@transaction.atomic
def card_detached_sync(*, stripe_payment_method_id: str) -> PaymentMethod | None:
    """A card left its customer at Stripe (the dashboard, another tool): forget it here too.
    Stripe is asked for the card's state now, so an old event never detaches a card attached again."""
    card = PaymentMethod.objects.filter(stripe_payment_method_id=stripe_payment_method_id).first()
    if card is None or card.detached_at is not None:
        return card
    account = billing_account_lock(account=card.account)
    card.refresh_from_db()
    if card.detached_at is not None:
        return card
    current = stripe_client().v1.payment_methods.retrieve(stripe_payment_method_id)
    if current.customer and current.customer == account.stripe_customer_id:
        return card
    _card_forget(account=account, card=card)
    card.refresh_from_db()
    return card


def account_for_customer(customer_id: str | None) -> BillingAccount | None:
    if not customer_id:
        return None
    return BillingAccount.objects.select_related("organization").filter(stripe_customer_id=customer_id).first()
