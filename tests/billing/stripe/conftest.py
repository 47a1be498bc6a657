"""Helpers of the Stripe tests: what the browser's Stripe.js does, and what Stripe's deliveries look like."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.request
import uuid

import pytest
from django.conf import settings

from apps.accounts.models import Membership, Role
from apps.billing.services.accounts import billing_account_get_or_create
from tests.factories.accounts import OrganizationFactory, UserFactory

CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000002"  # declined when it is set up
CARD_CHARGE_FAILS = "4000000000000341"  # sets up, then every charge fails
WEBHOOK_URL = "/billing/stripe/webhook/"


def api_base() -> str:
    return os.environ["STRIPE_API_BASE"]


def stripe_http(method: str, path: str, body: dict | None = None, *, secret_key: bool = False) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if secret_key:
        headers["Authorization"] = f"Bearer {settings.STRIPE_SECRET_KEY}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{api_base()}{path}", data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def setup_intent_confirm_as_browser(*, setup_intent_id: str, client_secret: str, number: str) -> tuple[int, dict]:
    """Exactly the request Stripe.js's stand-in (confirmCardSetup) sends from the browser: the
    publishable key, the client secret and the card, straight to Stripe, never to the portal."""
    return stripe_http(
        "POST",
        f"/v1/setup_intents/{setup_intent_id}/confirm",
        {
            "key": settings.STRIPE_PUBLISHABLE_KEY,
            "use_stripe_sdk": True,
            "client_secret": client_secret,
            "payment_method_data": {
                "type": "card",
                "card": {"number": number, "exp_month": "12", "exp_year": "2034", "cvc": "123"},
            },
        },
    )


def stripe_events_of(object_id: str, event_type: str) -> list[dict]:
    """The events localstripe generated (and would deliver) about one object, as raw JSON."""
    return stripe_events(event_type, lambda obj: obj.get("id") == object_id)


def stripe_events(event_type: str, where) -> list[dict]:
    """The events of `event_type` whose object satisfies `where`, oldest first."""
    found, after = [], ""
    while True:
        status, answer = stripe_http("GET", f"/v1/events?type={event_type}&limit=100{after}", secret_key=True)
        assert status == 200, answer
        found += [event for event in answer["data"] if where(event["data"]["object"])]
        if not answer["has_more"] or not answer["data"]:
            return found
        after = f"&starting_after={answer['data'][-1]['id']}"


def stripe_signature(body: bytes, *, secret: str | None = None, timestamp: int | None = None) -> str:
    """A Stripe-Signature header as Stripe (and localstripe) computes it."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    secret = settings.STRIPE_WEBHOOK_SECRET if secret is None else secret
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def stripe_event(event_type: str, obj: dict, *, event_id: str | None = None) -> dict:
    return {
        "id": event_id or f"evt_test_{uuid.uuid4().hex[:20]}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "livemode": False,
        "api_version": "2017-08-15",
        "data": {"object": obj},
    }


def deliver(client, event: dict, *, signature: str | None = None):
    """POST `event` to the webhook endpoint as Stripe does."""
    body = json.dumps(event).encode()
    headers = {"HTTP_STRIPE_SIGNATURE": signature if signature is not None else stripe_signature(body)}
    return client.post(WEBHOOK_URL, data=body, content_type="application/json", **headers)


@pytest.fixture
def owner(db):
    return UserFactory()


@pytest.fixture
def organization(owner):
    return OrganizationFactory(owner=owner)


@pytest.fixture
def account(organization):
    return billing_account_get_or_create(organization=organization)


@pytest.fixture
def member_of(db):
    def _member(organization, role: str):
        user = UserFactory()
        Membership.objects.create(organization=organization, user=user, role=role)
        return user

    return _member


@pytest.fixture
def billing_member(organization, member_of):
    return member_of(organization, Role.BILLING)
