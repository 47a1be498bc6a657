"""Credit top-ups by card against the real localstripe: the page starts the payment, the credits
come only from Stripe's payment_intent.succeeded webhook; refunds are recorded from charge.refunded."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from apps.billing.models import BillingEvent, CreditGrant, CreditKind
from apps.billing.services.cards import card_setup_confirm, card_setup_intent_create
from apps.billing.services.topups import topup_amount_clean, topup_refund, topup_start
from apps.billing.stripe_api import stripe_client

from .conftest import (
    CARD_CHARGE_FAILS,
    deliver,
    setup_intent_confirm_as_browser,
    stripe_events,
    stripe_events_of,
    stripe_http,
)
from .test_cards import card_add

pytestmark = pytest.mark.django_db
CARD_3DS = "4000002500003155"  # asks the cardholder to authenticate


def key() -> str:
    return uuid.uuid4().hex


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("", "Enter an amount"),
        ("ten", "Enter an amount"),
        ("NaN", "Enter an amount"),
        ("4.99", "between $5.00 and $10,000.00"),
        ("-20", "between"),
        ("10000.01", "between"),
        ("1e400", "between"),
        ("25.005", "at most 2 decimal places"),
    ],
)
def test_a_bad_amount_is_refused_with_a_clear_message(amount, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        topup_amount_clean(amount=amount, currency="USD")


def test_amounts_are_decimal_to_the_cent():
    assert topup_amount_clean(amount=" 1,250.5 ", currency="USD") == Decimal("1250.50")


def test_a_top_up_needs_a_usable_card(account):
    with pytest.raises(ValidationError, match="Add a card"):
        topup_start(account=account, amount="50", request_key=key())


def test_a_paid_top_up_adds_credits_only_when_stripe_says_so_and_only_once(client, account, owner):
    card_add(account)

    # When the owner tops up $50 (submitting the form twice)
    request_key = key()
    started = topup_start(account=account, amount="50.00", request_key=request_key, user_id=owner.pk)
    again = topup_start(account=account, amount="50.00", request_key=request_key, user_id=owner.pk)

    # Then Stripe charged the card once, and no credits exist yet on the browser's word
    assert started.status == "succeeded" and again.payment_intent_id == started.payment_intent_id
    intent = stripe_client().v1.payment_intents.retrieve(started.payment_intent_id)
    assert (intent.amount, intent.currency, intent.metadata["kind"]) == (5000, "usd", "topup")
    assert not CreditGrant.objects.filter(account=account).exists()

    # When Stripe's payment_intent.succeeded arrives (twice, as a retry would)
    [succeeded] = stripe_events_of(started.payment_intent_id, "payment_intent.succeeded")
    deliver(client, succeeded)
    deliver(client, succeeded)

    # Then the credits are there, once, for the exact amount, bought by the owner
    grant = CreditGrant.objects.get(account=account)
    assert (grant.kind, grant.amount, grant.stripe_payment_intent_id) == (
        CreditKind.TOPUP,
        Decimal("50.00"),
        started.payment_intent_id,
    )
    assert grant.created_by == owner


def test_a_declined_top_up_says_why_and_adds_nothing(client, account):
    card_add(account, CARD_CHARGE_FAILS)

    with pytest.raises(ValidationError, match="The card was not charged: Your card was declined."):
        topup_start(account=account, amount="20", request_key=key())

    [failed] = stripe_events(
        "payment_intent.payment_failed", lambda intent: intent.get("customer") == account.stripe_customer_id
    )
    deliver(client, failed)
    assert not CreditGrant.objects.filter(account=account).exists()
    note = BillingEvent.objects.get(account=account, kind="topup_failed")
    assert "$20.00 failed" in note.message and "declined" in note.message


def test_a_refunded_top_up_is_recorded_with_a_note_about_its_credits(client, account):
    card_add(account)
    started = topup_start(account=account, amount="30", request_key=key())
    deliver(client, stripe_events_of(started.payment_intent_id, "payment_intent.succeeded")[0])
    grant = CreditGrant.objects.get(account=account)

    # When staff refund $10 of it at Stripe
    topup_refund(grant=grant, amount=Decimal("10.00"), request_key=key())
    charge = stripe_client().v1.payment_intents.retrieve(started.payment_intent_id).latest_charge
    charge_id = charge if isinstance(charge, str) else charge.id  # localstripe expands it
    [refunded] = stripe_events_of(charge_id, "charge.refunded")
    deliver(client, refunded)

    # Then the account's history says so, and that the grant needs a look
    note = BillingEvent.objects.get(account=account, kind="refund")
    assert "$10.00" in note.message and f"grant #{grant.pk}" in note.message


# --- the page ------------------------------------------------------------------------------------


def test_the_top_up_page_charges_the_card_and_says_credits_follow(client, owner, organization, account):
    card_add(account)
    client.force_login(owner)
    page = client.get(reverse("billing-topup", args=[organization.slug]))
    request_key = page.context["form"]["request_key"].value()

    response = client.post(
        reverse("billing-topup", args=[organization.slug]), {"amount": "75", "request_key": request_key}, follow=True
    )

    assert "Payment of $75.00 received" in response.content.decode()
    [succeeded] = stripe_events(
        "payment_intent.succeeded", lambda intent: intent.get("customer") == account.stripe_customer_id
    )
    assert succeeded["data"]["object"]["amount"] == 7500


def test_the_top_up_page_shows_amount_errors_and_keeps_the_form(client, owner, organization, account):
    card_add(account)
    client.force_login(owner)
    response = client.post(reverse("billing-topup", args=[organization.slug]), {"amount": "1", "request_key": key()})
    assert response.status_code == 400
    assert "A top-up is between $5.00 and $10,000.00." in response.content.decode()


def test_without_a_card_the_page_sends_you_to_add_one(client, owner, organization, account):
    client.force_login(owner)
    response = client.get(reverse("billing-topup", args=[organization.slug]))
    assert 'data-testid="topup-needs-card"' in response.content.decode()


def test_a_card_that_needs_authentication_is_confirmed_in_the_page_then_credited(client, account):
    """A 3-D Secure card: Stripe wants the cardholder, so the page gets the client secret and runs
    confirmCardPayment (its stand-in posts to _authenticate); the webhook still makes the credits."""
    intent = card_setup_intent_create(account=account)
    status, answer = setup_intent_confirm_as_browser(
        setup_intent_id=intent.id, client_secret=intent.client_secret, number=CARD_3DS
    )
    assert answer["status"] == "requires_action"
    # The cardholder completes authentication of the setup in Stripe.js's modal
    stripe_http(
        "POST", f"/v1/setup_intents/{intent.id}/confirm", {"key": "pk_test_x", "client_secret": intent.client_secret}
    )
    card_setup_confirm(account=account, setup_intent_id=intent.id)

    started = topup_start(account=account, amount="15", request_key=key())

    assert started.status == "requires_action" and started.client_secret
    assert not stripe_events_of(started.payment_intent_id, "payment_intent.succeeded")
    # What confirmCardPayment sends when the cardholder clicks "Complete authentication"
    status, answer = stripe_http(
        "POST",
        f"/v1/payment_intents/{started.payment_intent_id}/_authenticate?success=true",
        {"key": "pk_test_x", "client_secret": started.client_secret},
    )
    assert status == 200 and answer["status"] == "succeeded"
    deliver(client, stripe_events_of(started.payment_intent_id, "payment_intent.succeeded")[0])
    assert CreditGrant.objects.get(account=account).amount == Decimal("15.00")
