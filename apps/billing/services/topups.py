"""Credit top-ups by card, and refunds of them.

The browser never creates credits: a top-up is a PaymentIntent on the default card, and the
credits appear when Stripe's payment_intent.succeeded webhook says the money arrived
(stripe_handlers.payment_intent_succeeded, idempotent on the PaymentIntent id).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import stripe
from django.conf import settings
from django.core.exceptions import ValidationError

from portal.ui.money import money_format

from ..models import BillingAccount, CreditGrant, CreditKind
from ..money import money_minor_digits, money_quantum, money_to_minor
from ..selectors.cards import payment_method_usable_get
from ..stripe_api import stripe_client
from .cards import stripe_answer_message
from .customers import stripe_customer_ensure, stripe_idempotency_key
from .stripe_handlers import TOPUP

REQUEST_KEY = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class TopupStarted:
    payment_intent_id: str
    status: str  # Stripe's PaymentIntent status
    amount: Decimal
    currency: str
    # Set when the bank wants the cardholder to authenticate in the page (confirmCardPayment).
    client_secret: str | None = None


def topup_amount_clean(*, amount, currency: str) -> Decimal:
    """A top-up amount as Decimal in the currency's major unit, within the configured bounds."""
    try:
        value = Decimal(str(amount).strip().replace(",", ""))
    except (InvalidOperation, ValueError) as error:
        raise ValidationError({"amount": "Enter an amount such as 50 or 25.50."}) from error
    if not value.is_finite():
        raise ValidationError({"amount": "Enter an amount such as 50 or 25.50."})
    low, high = settings.BILLING["TOPUP_MIN"], settings.BILLING["TOPUP_MAX"]
    # Bounds first: quantizing an absurd amount (1e400) would overflow the decimal context.
    if value < low or value > high:
        raise ValidationError(
            {"amount": f"A top-up is between {money_format(low, currency)} and {money_format(high, currency)}."}
        )
    if value != value.quantize(money_quantum(currency)):
        raise ValidationError({"amount": f"Use at most {money_minor_digits(currency)} decimal places."})
    return value.quantize(money_quantum(currency))


def topup_start(*, account: BillingAccount, amount, request_key: str, user_id: int | None = None) -> TopupStarted:
    """Charge the default card for `amount` of credits. `request_key` comes from the form the user
    submitted, so a double submit (or a retry after a lost answer) is one payment, not two."""
    if not REQUEST_KEY.match(request_key or ""):
        raise ValidationError("This form has expired; reload the page and try again.")
    amount = topup_amount_clean(amount=amount, currency=account.currency)
    card = payment_method_usable_get(account=account)
    if card is None:
        raise ValidationError("Add a card (or replace the expired one) before topping up.")
    customer_id = stripe_customer_ensure(account=account)
    try:
        intent = stripe_client().v1.payment_intents.create(
            params={
                "amount": money_to_minor(amount, account.currency),
                "currency": account.currency.lower(),
                "customer": customer_id,
                "payment_method": card.stripe_payment_method_id,
                "off_session": True,
                "confirm": True,
                # No `description`: localstripe refuses it on PaymentIntents; the metadata says what it is.
                "metadata": {
                    "kind": TOPUP,
                    "organization_id": str(account.pk),
                    "organization_slug": account.organization.slug,
                    "user_id": str(user_id or ""),
                },
            },
            options={"idempotency_key": stripe_idempotency_key("topup", account.pk, request_key)},
        )
    except stripe.CardError as error:
        raise ValidationError(f"The card was not charged: {stripe_answer_message(error)}") from error
    except stripe.InvalidRequestError as error:
        raise ValidationError(stripe_answer_message(error)) from error
    return TopupStarted(
        payment_intent_id=intent.id,
        status=intent.status,
        amount=amount,
        currency=account.currency,
        client_secret=intent.client_secret if intent.status == "requires_action" else None,
    )


def topup_refund(*, grant: CreditGrant, amount: Decimal | None = None, request_key: str) -> str:
    """Refund (part of) a top-up at Stripe, for staff. The charge.refunded webhook records it on
    the account. Returns the refund id."""
    if grant.kind != CreditKind.TOPUP or not grant.stripe_payment_intent_id:
        raise ValidationError("Only a top-up paid by card can be refunded.")
    params: dict = {"payment_intent": grant.stripe_payment_intent_id, "metadata": {"credit_grant_id": str(grant.pk)}}
    if amount is not None:
        if amount <= 0 or amount > grant.amount:
            raise ValidationError({"amount": f"Refund between 0 and {money_format(grant.amount, grant.currency)}."})
        params["amount"] = money_to_minor(amount, grant.currency)
    try:
        refund = stripe_client().v1.refunds.create(
            params=params, options={"idempotency_key": stripe_idempotency_key("refund", grant.pk, request_key)}
        )
    except stripe.InvalidRequestError as error:
        raise ValidationError(stripe_answer_message(error)) from error
    return refund.id
