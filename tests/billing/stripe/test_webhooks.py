"""The webhook endpoint: verified, stored under the Stripe id first, processed exactly once, and
a failure kept for the retry path."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from django.db import connection
from django.test import Client

from apps.billing.models import BillingAccount, BillingEvent, PaymentMethod, WebhookEvent, WebhookEventStatus
from apps.billing.services.accounts import billing_account_get_or_create
from apps.billing.services.cards import card_setup_intent_create
from apps.billing.services.webhooks import webhook_events_retry
from devtools.stripe_local import localstripe_outage
from tests.factories.accounts import OrganizationFactory, UserFactory

from .conftest import (
    CARD_OK,
    api_base,
    deliver,
    setup_intent_confirm_as_browser,
    stripe_event,
    stripe_events_of,
    stripe_signature,
)

W = WebhookEventStatus


def refund_event(customer_id: str) -> dict:
    """A charge.refunded event: its handler writes one BillingEvent each time it runs, so it shows
    how often an event took effect."""
    return stripe_event(
        "charge.refunded",
        {
            "id": f"ch_{uuid.uuid4().hex[:14]}",
            "object": "charge",
            "customer": customer_id,
            "currency": "usd",
            "amount": 2500,
            "amount_refunded": 1000,
            "payment_intent": None,
        },
    )


@pytest.fixture
def customer_account(db):
    account = billing_account_get_or_create(organization=OrganizationFactory(owner=UserFactory()))
    BillingAccount.objects.filter(pk=account.pk).update(stripe_customer_id=f"cus_test_{uuid.uuid4().hex[:12]}")
    account.refresh_from_db()
    return account


@pytest.mark.django_db
@pytest.mark.parametrize(
    "signature",
    [
        "",
        "t=1,v1=deadbeef",
        "wrong secret",
        "stale",
    ],
)
def test_a_delivery_without_a_valid_signature_is_refused_and_not_stored(client, customer_account, signature):
    event = refund_event(customer_account.stripe_customer_id)
    body = json.dumps(event).encode()
    header = {
        "wrong secret": stripe_signature(body, secret="whsec_someone_else"),
        "stale": stripe_signature(body, timestamp=int(time.time()) - 3600),
    }.get(signature, signature)

    response = deliver(client, event, signature=header)

    assert response.status_code == 400
    assert not WebhookEvent.objects.filter(stripe_event_id=event["id"]).exists()
    assert not BillingEvent.objects.filter(account=customer_account, kind="refund").exists()


@pytest.mark.django_db
def test_a_delivery_without_the_header_is_refused(client, customer_account):
    event = refund_event(customer_account.stripe_customer_id)
    response = client.post("/billing/stripe/webhook/", data=json.dumps(event), content_type="application/json")
    assert response.status_code == 400
    assert not WebhookEvent.objects.filter(stripe_event_id=event["id"]).exists()


@pytest.mark.django_db
def test_the_same_event_delivered_ten_times_takes_effect_once(client, customer_account):
    event = refund_event(customer_account.stripe_customer_id)

    # When Stripe delivers the same event ten times (retries, replays), each freshly signed
    answers = [deliver(client, event) for _ in range(10)]

    # Then every delivery is acknowledged, and the event was stored and acted on once
    assert [a.status_code for a in answers] == [200] * 10
    stored = WebhookEvent.objects.get(stripe_event_id=event["id"])
    assert (stored.status, stored.attempts, stored.type) == (W.PROCESSED, 1, "charge.refunded")
    assert BillingEvent.objects.filter(account=customer_account, kind="refund").count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_of_one_event_take_effect_once(customer_account):
    event = refund_event(customer_account.stripe_customer_id)
    threads_n = 8
    barrier = threading.Barrier(threads_n)
    answers: list[int] = []

    def post():
        try:
            barrier.wait()
            answers.append(deliver(Client(), event).status_code)
        finally:
            connection.close()

    # When eight deliveries of the same event arrive at once, each on its own database connection
    threads = [threading.Thread(target=post) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then all are acknowledged and exactly one took effect
    assert answers == [200] * threads_n
    assert WebhookEvent.objects.filter(stripe_event_id=event["id"]).count() == 1
    assert WebhookEvent.objects.get(stripe_event_id=event["id"]).attempts == 1
    assert BillingEvent.objects.filter(account=customer_account, kind="refund").count() == 1


@pytest.mark.django_db
def test_an_event_type_we_do_not_handle_is_stored_and_ignored(client):
    event = stripe_event("customer.created", {"id": "cus_whatever", "object": "customer"})

    response = deliver(client, event)

    assert response.status_code == 200 and response.json()["status"] == W.IGNORED
    assert WebhookEvent.objects.get(stripe_event_id=event["id"]).status == W.IGNORED


@pytest.mark.django_db
def test_an_event_about_an_unknown_customer_is_done_not_failed(client):
    event = refund_event("cus_of_another_environment")
    assert deliver(client, event).json()["status"] == W.PROCESSED


@pytest.mark.django_db
def test_a_failed_event_is_kept_and_the_retry_path_finishes_it(client, account):
    """payment_method.attached asks Stripe for the card's current state; while Stripe is down the
    event fails, stays stored, and the retry pass (beat) records the card once Stripe is back."""
    intent = card_setup_intent_create(account=account)
    setup_intent_confirm_as_browser(setup_intent_id=intent.id, client_secret=intent.client_secret, number=CARD_OK)
    # The card attached at Stripe by something other than our page (so nothing here knows it yet)
    from apps.billing.stripe_api import stripe_client

    payment_method_id = stripe_client().v1.setup_intents.retrieve(intent.id).payment_method
    stripe_client().v1.payment_methods.attach(payment_method_id, params={"customer": account.stripe_customer_id})
    [attached] = stripe_events_of(payment_method_id, "payment_method.attached")

    # When it is delivered while Stripe answers 503 (the library's own retries included)
    localstripe_outage(api_base=api_base(), count=3)
    response = deliver(client, attached)
    localstripe_outage(api_base=api_base(), count=0)

    # Then Stripe still gets 200 (the event is ours now), and it is FAILED with the reason
    assert response.status_code == 200 and response.json()["status"] == W.FAILED
    stored = WebhookEvent.objects.get(stripe_event_id=attached["id"])
    assert stored.status == W.FAILED and stored.attempts == 1 and "outage" in stored.last_error.lower()
    assert not PaymentMethod.objects.filter(stripe_payment_method_id=payment_method_id).exists()

    # When the retry pass runs with Stripe back
    assert webhook_events_retry() >= 1

    # Then the card is recorded (and, as the account's first, made the default)
    stored.refresh_from_db()
    assert stored.status == W.PROCESSED and stored.attempts == 2
    card = PaymentMethod.objects.get(stripe_payment_method_id=payment_method_id)
    assert card.account_id == account.pk and card.is_default


@pytest.mark.django_db
def test_a_detached_event_forgets_the_card_unless_it_is_attached_again(client, account):
    from apps.billing.stripe_api import stripe_client

    from .test_cards import card_add

    card = card_add(account)
    # Someone detaches the card at Stripe (the dashboard), and Stripe tells us
    stripe_client().v1.payment_methods.detach(card.stripe_payment_method_id)
    [detached] = stripe_events_of(card.stripe_payment_method_id, "payment_method.detached")

    assert deliver(client, detached).json()["status"] == W.PROCESSED

    card.refresh_from_db()
    assert card.detached_at is not None and not card.is_default
