"""One Stripe object told twice, under two event ids (invoice.paid and invoice.payment_succeeded
for one payment, a regenerated event): the second has no effect of any kind. No note, credit,
card, invoice or standing change, and nothing queued after commit (no notice email, no live push,
no task). Everything goes through the real webhook endpoint with signed payloads."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from apps.billing.models import (
    BillingAccount,
    BillingEvent,
    CreditGrant,
    Invoice,
    InvoiceStatus,
    PaymentMethod,
    PaymentStanding,
    WebhookEvent,
)
from apps.billing.services.accounts import billing_account_get_or_create
from apps.billing.services.standing import account_standing_payment_failed
from apps.billing.services.topups import topup_refund, topup_start
from apps.billing.stripe_api import stripe_client
from tests.factories.accounts import OrganizationFactory, UserFactory
from tests.factories.billing import stripe_customer_with_card

from .conftest import CARD_CHARGE_FAILS, deliver, stripe_event, stripe_events, stripe_events_of
from .test_cards import card_add
from .test_standing import invoice_of

pytestmark = pytest.mark.django_db


def retold(event: dict) -> dict:
    """The same object under a new event id (and possibly another type for the same fact)."""
    return {**event, "id": f"evt_again_{uuid.uuid4().hex[:16]}"}


def state_of(account: BillingAccount) -> dict:
    """Everything a webhook may change for an account, to compare before and after."""
    account.refresh_from_db()
    return {
        "notes": list(BillingEvent.objects.filter(account=account).values_list("kind", "message")),
        "grants": list(CreditGrant.objects.filter(account=account).values_list("pk", "amount")),
        "cards": list(PaymentMethod.objects.filter(account=account).values_list("pk", "is_default", "detached_at")),
        "invoices": list(Invoice.objects.filter(account=account).values_list("pk", "status", "status_changed_at")),
        "standing": (account.standing, account.standing_changed_at, account.past_due_since),
    }


def deliver_again_changes_nothing(client, account, event: dict, capture) -> None:
    """Deliver `event` under a new id: it is acknowledged as processed, and nothing changed or
    was queued."""
    before = state_of(account)
    with capture() as callbacks:
        answer = deliver(client, retold(event))
    assert answer.status_code == 200 and answer.json()["status"] == "processed"
    assert state_of(account) == before
    assert callbacks == [], "nothing may be queued after commit (notice email, live push, task)"


def test_a_paid_top_up_told_again_adds_no_credit_and_no_note(
    client, account, owner, django_capture_on_commit_callbacks
):
    # Given a top-up that Stripe's first event paid
    card_add(account)
    started = topup_start(account=account, amount="40", request_key=uuid.uuid4().hex, user_id=owner.pk)
    [succeeded] = stripe_events_of(started.payment_intent_id, "payment_intent.succeeded")
    assert deliver(client, succeeded).json()["status"] == "processed"
    assert BillingEvent.objects.filter(account=account, kind="topup_paid").count() == 1

    # When the same paid PaymentIntent arrives under another event id
    # Then there is no second credit, note or push
    deliver_again_changes_nothing(client, account, succeeded, django_capture_on_commit_callbacks)
    assert CreditGrant.objects.get(account=account).amount == Decimal("40.00")


def test_a_failed_top_up_told_again_writes_one_note(client, account, django_capture_on_commit_callbacks):
    card_add(account, CARD_CHARGE_FAILS)
    with pytest.raises(Exception, match="declined"):
        topup_start(account=account, amount="20", request_key=uuid.uuid4().hex)
    [failed] = stripe_events(
        "payment_intent.payment_failed", lambda intent: intent.get("customer") == account.stripe_customer_id
    )
    deliver(client, failed)
    assert BillingEvent.objects.filter(account=account, kind="topup_failed").count() == 1

    deliver_again_changes_nothing(client, account, failed, django_capture_on_commit_callbacks)


def test_a_refund_told_again_writes_one_note_and_a_further_refund_its_own(
    client, account, django_capture_on_commit_callbacks
):
    # Given a paid top-up, $10 of it refunded and recorded
    card_add(account)
    started = topup_start(account=account, amount="30", request_key=uuid.uuid4().hex)
    deliver(client, stripe_events_of(started.payment_intent_id, "payment_intent.succeeded")[0])
    grant = CreditGrant.objects.get(account=account)
    topup_refund(grant=grant, amount=Decimal("10.00"), request_key=uuid.uuid4().hex)
    charge = stripe_client().v1.payment_intents.retrieve(started.payment_intent_id).latest_charge
    charge_id = charge if isinstance(charge, str) else charge.id
    [refunded] = stripe_events_of(charge_id, "charge.refunded")
    deliver(client, refunded)

    # When the same refunded charge arrives under another event id, nothing happens
    deliver_again_changes_nothing(client, account, refunded, django_capture_on_commit_callbacks)
    assert BillingEvent.objects.filter(account=account, kind="refund").count() == 1

    # But a further refund of the same charge (a new state of the object) is recorded
    more = retold(refunded)
    more["data"] = {"object": {**refunded["data"]["object"], "amount_refunded": 2500}}
    deliver(client, more)
    notes = list(BillingEvent.objects.filter(account=account, kind="refund").values_list("message", flat=True))
    assert len(notes) == 2 and any("$25.00 in all" in note for note in notes)


def test_invoice_paid_and_payment_succeeded_for_one_payment_restore_the_standing_once(
    client, account, django_capture_on_commit_callbacks
):
    # Given an account in its grace period over a failed invoice
    BillingAccount.objects.filter(pk=account.pk).update(stripe_customer_id=f"cus_test_{uuid.uuid4().hex[:12]}")
    account.refresh_from_db()
    invoice = invoice_of(account, status=InvoiceStatus.PAYMENT_FAILED)
    account_standing_payment_failed(account=account, invoice=invoice)
    assert state_of(account)["standing"][0] == PaymentStanding.GRACE
    paid = {
        "id": invoice.stripe_invoice_id,
        "object": "invoice",
        "customer": account.stripe_customer_id,
        "status": "paid",
        "status_transitions": {"paid_at": int(timezone.now().timestamp())},
    }

    # When Stripe sends invoice.paid, then invoice.payment_succeeded for the same payment
    assert deliver(client, stripe_event("invoice.paid", paid)).json()["status"] == "processed"
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and state_of(account)["standing"][0] == PaymentStanding.GOOD

    # Then the second changes nothing: one paid row, one restore (so one notice email)
    deliver_again_changes_nothing(
        client, account, stripe_event("invoice.payment_succeeded", paid), django_capture_on_commit_callbacks
    )
    assert BillingEvent.objects.filter(account=account, kind="invoice.paid").count() == 1
    assert BillingEvent.objects.filter(account=account, to_standing=PaymentStanding.GOOD).count() == 1


def test_a_payment_failure_told_again_mails_and_notes_once(client, account, django_capture_on_commit_callbacks):
    BillingAccount.objects.filter(pk=account.pk).update(stripe_customer_id=f"cus_test_{uuid.uuid4().hex[:12]}")
    account.refresh_from_db()
    invoice = invoice_of(account)
    failed = stripe_event(
        "invoice.payment_failed",
        {
            "id": invoice.stripe_invoice_id,
            "object": "invoice",
            "customer": account.stripe_customer_id,
            "status": "open",
            "attempt_count": 1,
            "payment_intent": None,
        },
    )
    deliver(client, failed)
    assert BillingEvent.objects.filter(account=account, to_standing=PaymentStanding.GRACE).count() == 1

    deliver_again_changes_nothing(client, account, failed, django_capture_on_commit_callbacks)


def test_a_failure_of_an_invoice_we_did_not_create_counts_once_per_attempt(
    client, account, django_capture_on_commit_callbacks
):
    # Given an account whose customer has an invoice made outside the portal (no row here)
    BillingAccount.objects.filter(pk=account.pk).update(stripe_customer_id=f"cus_test_{uuid.uuid4().hex[:12]}")
    account.refresh_from_db()
    obj = {
        "id": f"in_elsewhere_{uuid.uuid4().hex[:10]}",
        "object": "invoice",
        "customer": account.stripe_customer_id,
        "status": "open",
        "attempt_count": 1,
        "payment_intent": None,
    }
    failed = stripe_event("invoice.payment_failed", obj)
    deliver(client, failed)
    assert state_of(account)["standing"][0] == PaymentStanding.GRACE
    notes = BillingEvent.objects.filter(account=account).count()

    # When the same attempt is told again, nothing happens
    deliver_again_changes_nothing(client, account, failed, django_capture_on_commit_callbacks)

    # But Stripe's next attempt failing is recorded (the account is past due already: a note)
    deliver(client, stripe_event("invoice.payment_failed", {**obj, "attempt_count": 2}))
    assert BillingEvent.objects.filter(account=account).count() == notes + 1


def test_a_card_set_up_told_again_adds_nothing(client, account, django_capture_on_commit_callbacks):
    # Given a card the page saved after its SetupIntent succeeded
    card = card_add(account)
    card_id = card.stripe_payment_method_id
    [setup] = stripe_events("setup_intent.succeeded", lambda intent: intent.get("payment_method") == card_id)
    [attached] = stripe_events_of(card.stripe_payment_method_id, "payment_method.attached")

    # When Stripe's events about it arrive, each twice under different ids: nothing changes
    for event in (setup, attached):
        deliver(client, event)
        deliver_again_changes_nothing(client, account, event, django_capture_on_commit_callbacks)
    assert PaymentMethod.objects.filter(account=account).count() == 1


def test_a_refused_card_is_noted_once(client, account, django_capture_on_commit_callbacks):
    # Given a card that belongs to another customer, which a SetupIntent event names for ours
    other = billing_account_get_or_create(organization=OrganizationFactory(owner=UserFactory()))
    stripe_customer_with_card(other)
    foreign_customer = stripe_client().v1.customers.retrieve(other.stripe_customer_id)
    foreign_card = foreign_customer.invoice_settings.default_payment_method
    stripe_customer_with_card(account)
    setup = stripe_event(
        "setup_intent.succeeded",
        {
            "id": f"seti_test_{uuid.uuid4().hex[:12]}",
            "object": "setup_intent",
            "customer": account.stripe_customer_id,
            "payment_method": foreign_card,
            "status": "succeeded",
        },
    )
    deliver(client, setup)
    assert BillingEvent.objects.filter(account=account, kind="card_refused").count() == 1

    deliver_again_changes_nothing(client, account, setup, django_capture_on_commit_callbacks)


@pytest.mark.django_db(transaction=True)
def test_one_object_told_under_many_ids_at_once_takes_effect_once(account):
    # Given a charge refund told under eight event ids, delivered at the same moment
    BillingAccount.objects.filter(pk=account.pk).update(stripe_customer_id=f"cus_test_{uuid.uuid4().hex[:12]}")
    obj = {
        "id": f"ch_{uuid.uuid4().hex[:14]}",
        "object": "charge",
        "customer": BillingAccount.objects.get(pk=account.pk).stripe_customer_id,
        "currency": "usd",
        "amount": 2500,
        "amount_refunded": 1000,
        "payment_intent": None,
    }
    events = [stripe_event("charge.refunded", obj) for _ in range(8)]
    barrier = threading.Barrier(len(events))
    answers: list[int] = []

    def post(event):
        try:
            barrier.wait()
            answers.append(deliver(Client(), event).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then all are stored and acknowledged, and one note exists
    assert answers == [200] * len(events)
    assert WebhookEvent.objects.filter(stripe_event_id__in=[e["id"] for e in events]).count() == len(events)
    assert BillingEvent.objects.filter(account=account, kind="refund").count() == 1
