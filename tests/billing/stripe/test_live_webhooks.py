"""Through the real pieces: localstripe delivers its own signed events to the live portal (ASGI
server behind the front proxy), and a real Celery worker mails the standing notice."""

from __future__ import annotations

import json
import re
import urllib.request
import uuid

import pytest

from apps.billing.models import (
    BillingAccount,
    CreditGrant,
    PaymentMethod,
    PaymentStanding,
    WebhookEvent,
    WebhookEventStatus,
)
from apps.billing.services.accounts import billing_account_get_or_create
from apps.billing.services.cards import card_setup_intent_create
from apps.billing.services.topups import topup_start
from apps.billing.stripe_api import stripe_client
from tests.factories.accounts import OrganizationFactory, UserFactory
from tests.support.mail import wait_for_link
from tests.support.waiting import wait_until as eventually

from .conftest import CARD_OK, WEBHOOK_URL, setup_intent_confirm_as_browser, stripe_event, stripe_signature

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def live_account():
    owner = UserFactory()
    account = billing_account_get_or_create(organization=OrganizationFactory(owner=owner))
    account.owner = owner
    return account


def test_a_card_confirmed_at_stripe_is_saved_from_the_webhook_alone(stripe_webhooks_live, live_account):
    account = live_account
    intent = card_setup_intent_create(account=account)

    # When the browser confirms the card with Stripe and never tells the portal (a closed tab)
    status, _ = setup_intent_confirm_as_browser(
        setup_intent_id=intent.id, client_secret=intent.client_secret, number=CARD_OK
    )
    assert status == 200

    # Then localstripe's setup_intent.succeeded reaches the live portal, which attaches and saves the card
    def saved():
        """the card is saved by the portal"""
        return PaymentMethod.objects.filter(account=account).first()

    card = eventually(saved)
    assert card.last4 == "4242" and card.is_default
    account.refresh_from_db()
    assert stripe_client().v1.payment_methods.retrieve(card.stripe_payment_method_id).customer == (
        account.stripe_customer_id
    )
    delivered = WebhookEvent.objects.get(type="setup_intent.succeeded", payload__data__object__id=intent.id)
    assert delivered.status == WebhookEventStatus.PROCESSED


def test_a_top_up_becomes_credits_when_stripes_own_delivery_arrives(stripe_webhooks_live, live_account):
    account = live_account
    intent = card_setup_intent_create(account=account)
    setup_intent_confirm_as_browser(setup_intent_id=intent.id, client_secret=intent.client_secret, number=CARD_OK)
    from apps.billing.services.cards import card_setup_confirm

    card_setup_confirm(account=account, setup_intent_id=intent.id)

    started = topup_start(account=account, amount="40", request_key=uuid.uuid4().hex)

    def granted():
        """the top-up's credits exist"""
        return CreditGrant.objects.filter(stripe_payment_intent_id=started.payment_intent_id).first()

    grant = eventually(granted)
    assert str(grant.amount) == "40.00" and grant.account_id == account.pk


def test_a_failed_payment_puts_the_account_in_grace_and_the_worker_mails_the_owner(
    stripe_webhooks_live, celery_worker, live_account
):
    account = live_account
    BillingAccount.objects.filter(pk=account.pk).update(stripe_customer_id=f"cus_test_{uuid.uuid4().hex[:12]}")
    account.refresh_from_db()
    event = stripe_event(
        "invoice.payment_failed",
        {"id": f"in_test_{uuid.uuid4().hex[:12]}", "object": "invoice", "customer": account.stripe_customer_id},
    )
    body = json.dumps(event).encode()

    # When Stripe's delivery reaches the live portal
    request = urllib.request.Request(
        stripe_webhooks_live.url + WEBHOOK_URL,
        data=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": stripe_signature(body)},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200

    # Then the account is in grace, and the Celery worker mails the owner a link to the cards page
    account.refresh_from_db()
    assert account.standing == PaymentStanding.GRACE
    link = wait_for_link(to=account.owner.email, pattern=re.escape(f"/orgs/{account.organization.slug}/billing/cards/"))
    assert link
