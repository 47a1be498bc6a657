"""Payment standing (dunning): a failed payment starts a grace period; time blocks launches, then
stops what runs; paying restores good standing. Time passes through the enforce service's `now`."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.accounts.models import Role
from apps.billing.models import BillingAccount, BillingEvent, Invoice, InvoiceKind, InvoiceStatus, PaymentStanding
from apps.billing.services.eligibility import billing_launch_eligibility_check
from apps.billing.services.standing import (
    account_standing_payment_failed,
    account_standings_enforce,
    billing_notice_deliver,
)
from apps.billing.tasks.stripe import payment_standing_enforce
from apps.instances.models import InstanceEvent, InstanceState
from tests.factories.billing import InstanceFactory

from .conftest import deliver, stripe_event

pytestmark = pytest.mark.django_db
P = PaymentStanding
GRACE = timedelta(seconds=settings.BILLING["PAYMENT_GRACE_S"])
SUSPEND = GRACE + timedelta(seconds=settings.BILLING["PAYMENT_SUSPEND_AFTER_S"])


def invoice_of(account, status=InvoiceStatus.OPEN, **fields) -> Invoice:
    now = timezone.now()
    return Invoice.objects.create(
        account=account,
        number=f"INV-T-{uuid.uuid4().hex[:10]}",
        kind=InvoiceKind.MONTHLY,
        period_start=now - timedelta(days=30),
        period_end=now,
        currency="USD",
        subtotal="12.34",
        total="12.34",
        status=status,
        stripe_invoice_id=f"in_test_{uuid.uuid4().hex[:12]}",
        idempotency_key=uuid.uuid4().hex,
        **fields,
    )


@pytest.fixture
def stripe_account(account):
    BillingAccount.objects.filter(pk=account.pk).update(stripe_customer_id=f"cus_test_{uuid.uuid4().hex[:12]}")
    account.refresh_from_db()
    return account


def standing_of(account) -> str:
    account.refresh_from_db()
    return account.standing


def test_a_failed_payment_starts_the_grace_period_and_mails_owners_and_billing_members(
    client, stripe_account, owner, billing_member, member_of, django_capture_on_commit_callbacks
):
    account = stripe_account
    plain_member = member_of(account.organization, Role.MEMBER)
    invoice = invoice_of(account)

    # When Stripe reports that the invoice's payment failed
    event = stripe_event(
        "invoice.payment_failed",
        {
            "id": invoice.stripe_invoice_id,
            "object": "invoice",
            "customer": account.stripe_customer_id,
            "status": "open",
            "payment_intent": None,
        },
    )
    with django_capture_on_commit_callbacks() as callbacks:
        assert deliver(client, event).json()["status"] == "processed"

    # Then the invoice failed, the account is in grace since now, with an event row, and a notice is queued
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAYMENT_FAILED
    assert standing_of(account) == P.GRACE and account.past_due_since is not None
    change = BillingEvent.objects.get(account=account, to_standing=P.GRACE)
    assert change.from_standing == P.GOOD and invoice.number in change.message
    assert callbacks, "the notice is sent after commit"

    # And the notice (what the Celery task sends) reaches the owner and the billing member only
    assert billing_notice_deliver(event_id=change.pk) == 2
    assert sorted(m.to[0] for m in mail.outbox) == sorted([owner.email, billing_member.email])
    assert plain_member.email not in {m.to[0] for m in mail.outbox}
    assert "grace period" in mail.outbox[0].subject.lower() and invoice.number in mail.outbox[0].body
    # And a second run of the task sends nothing more
    assert billing_notice_deliver(event_id=change.pk) == 0


def test_time_blocks_launches_then_suspends_and_stops_what_runs(stripe_account):
    account = stripe_account
    organization = account.organization
    running = InstanceFactory(organization=organization, state=InstanceState.RUNNING)
    queued = InstanceFactory(organization=organization, state=InstanceState.REQUESTED)
    stopped = InstanceFactory(organization=organization, state=InstanceState.STOPPED)
    account_standing_payment_failed(account=account, invoice=invoice_of(account, status=InvoiceStatus.PAYMENT_FAILED))
    failed_at = account.past_due_since

    # Just before the grace period ends nothing moves
    assert account_standings_enforce(now=failed_at + GRACE - timedelta(seconds=1))["blocked"] == 0
    assert standing_of(account) == P.GRACE

    # When the grace period is over, new launches are blocked (and a second pass changes nothing)
    assert account_standings_enforce(now=failed_at + GRACE + timedelta(seconds=1))["blocked"] == 1
    assert account_standings_enforce(now=failed_at + GRACE + timedelta(seconds=2)) == {
        "blocked": 0,
        "suspended": 0,
        "stopped": 0,
    }
    assert standing_of(account) == P.BLOCKED
    with pytest.raises(ValidationError, match="overdue"):
        billing_launch_eligibility_check(organization=organization)
    running.refresh_from_db()
    assert running.state == InstanceState.RUNNING

    # When the further period is over too, the account is suspended and what runs is stopped by billing
    counts = account_standings_enforce(now=failed_at + SUSPEND + timedelta(seconds=1))
    assert counts == {"blocked": 0, "suspended": 1, "stopped": 2}
    assert standing_of(account) == P.SUSPENDED
    running.refresh_from_db()
    queued.refresh_from_db()
    stopped.refresh_from_db()
    assert running.state == InstanceState.STOPPING and queued.state == InstanceState.STOPPED
    assert stopped.state == InstanceState.STOPPED
    stop = InstanceEvent.objects.get(instance=running, to_state=InstanceState.STOPPING)
    assert stop.source == "billing" and "payment is overdue" in stop.message
    # Each step left its event row
    kinds = list(BillingEvent.objects.filter(account=account, to_standing__gt="").values_list("to_standing", flat=True))
    assert sorted(kinds) == sorted([P.GRACE, P.BLOCKED, P.SUSPENDED])

    # And the beat task is idempotent: nothing left to move or stop
    counts = payment_standing_enforce()
    assert (counts["blocked"], counts["suspended"], counts["stopped"]) == (0, 0, 0)


def test_a_long_silence_goes_from_grace_to_suspended_in_one_pass(stripe_account):
    account = stripe_account
    account_standing_payment_failed(account=account, invoice=None)
    counts = account_standings_enforce(now=account.past_due_since + SUSPEND + timedelta(days=3))
    assert (counts["blocked"], counts["suspended"]) == (1, 1)
    assert standing_of(account) == P.SUSPENDED


def test_paying_restores_good_standing(client, stripe_account):
    account = stripe_account
    invoice = invoice_of(account, status=InvoiceStatus.PAYMENT_FAILED)
    account_standing_payment_failed(account=account, invoice=invoice)
    account_standings_enforce(now=account.past_due_since + SUSPEND + timedelta(seconds=1))
    assert standing_of(account) == P.SUSPENDED

    # When Stripe says the invoice is paid
    paid = stripe_event(
        "invoice.paid",
        {
            "id": invoice.stripe_invoice_id,
            "object": "invoice",
            "customer": account.stripe_customer_id,
            "status": "paid",
            "status_transitions": {"paid_at": int(timezone.now().timestamp())},
        },
    )
    assert deliver(client, paid).json()["status"] == "processed"

    # Then the invoice is paid and the account is in good standing, with nothing past due
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert standing_of(account) == P.GOOD and account.past_due_since is None
    assert BillingEvent.objects.filter(account=account, from_standing=P.SUSPENDED, to_standing=P.GOOD).count() == 1


def test_paying_one_invoice_keeps_the_account_past_due_while_another_is_unpaid(client, stripe_account):
    account = stripe_account
    first = invoice_of(account, status=InvoiceStatus.PAYMENT_FAILED)
    invoice_of(account, status=InvoiceStatus.PAYMENT_FAILED)
    account_standing_payment_failed(account=account, invoice=first)

    paid = stripe_event(
        "invoice.payment_succeeded",
        {"id": first.stripe_invoice_id, "object": "invoice", "customer": account.stripe_customer_id, "status": "paid"},
    )
    deliver(client, paid)

    first.refresh_from_db()
    assert first.status == InvoiceStatus.PAID
    assert standing_of(account) == P.GRACE


def test_a_late_failure_of_an_invoice_already_paid_changes_nothing(client, stripe_account):
    account = stripe_account
    invoice = invoice_of(account, status=InvoiceStatus.PAID)
    late = stripe_event(
        "invoice.payment_failed",
        {"id": invoice.stripe_invoice_id, "object": "invoice", "customer": account.stripe_customer_id},
    )
    deliver(client, late)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and standing_of(account) == P.GOOD
