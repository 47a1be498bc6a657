"""Pushing invoices to (local)stripe: items, invoice, finalize, pay — with idempotency keys, so
retries after an outage never create a second invoice, item or charge; a declined card leaves
the invoice PAYMENT_FAILED; PAID is recorded once, from Stripe's word."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import stripe as stripe_lib
from django.conf import settings
from django.test import override_settings

from apps.billing.models import BillingEvent, Invoice, InvoiceStatus, PaymentMethod, PaymentStanding
from apps.billing.money import money_to_minor
from apps.billing.services.cards import card_attach, card_default_set
from apps.billing.services.credits import credit_grant_create
from apps.billing.services.invoicing import (
    invoice_paid_record,
    invoice_payment_failed_record,
    invoice_push_run,
    invoice_stripe_sync,
    invoices_failed_pay_retry,
)
from apps.billing.stripe_api import stripe_client
from apps.billing.tasks.invoicing import invoice_push
from devtools.stripe_local import localstripe_outage
from tests.factories.billing import CARD_CHARGE_FAILS, CARD_OK

from .conftest import stripe_state

pytestmark = pytest.mark.django_db
St = InvoiceStatus


def _assert_charged_once(stripe, invoice: Invoice) -> None:
    state = stripe_state(stripe, invoice.account.stripe_customer_id)
    assert [i.id for i in state["invoices"]] == [invoice.stripe_invoice_id]
    remote = state["invoices"][0]
    assert remote.status == "paid" and remote.total == money_to_minor(invoice.total, invoice.currency)
    assert remote.metadata["portal_invoice_id"] == str(invoice.pk)
    items = [line.invoice_item for line in remote.lines.data]
    assert sorted(items) == sorted(invoice.lines.values_list("stripe_invoice_item_id", flat=True))
    assert len(set(items)) == invoice.lines.count()
    succeeded = [c for c in state["charges"] if c.status == "succeeded"]
    assert [c.amount for c in succeeded] == [money_to_minor(invoice.total, invoice.currency)]


def test_push_finalizes_and_charges_and_paid_is_recorded_once(october_invoice, stripe):
    invoice = october_invoice()
    assert invoice.total == Decimal("15.99")  # 14.94 + 1.05

    pushed = invoice_push_run(invoice_id=invoice.pk)

    # Stripe charged the card; here the invoice waits for Stripe's word (webhook or read-back)
    assert pushed.status == St.OPEN and pushed.finalized_at and pushed.stripe_invoice_id
    _assert_charged_once(stripe, pushed)
    synced = invoice_stripe_sync(invoice_id=invoice.pk)
    again = invoice_paid_record(stripe_invoice_id=pushed.stripe_invoice_id, paid_at=datetime.now(UTC))
    assert synced.status == again.status == St.PAID and synced.paid_at
    assert BillingEvent.objects.filter(account=invoice.account, kind="invoice.paid").count() == 1


def test_pushing_again_creates_nothing_new(october_invoice, stripe):
    invoice = october_invoice()
    invoice_push_run(invoice_id=invoice.pk)
    first = Invoice.objects.get(pk=invoice.pk)

    # a duplicate task (OPEN: the pay step is repeated with its key and answered from the first time)
    invoice_push_run(invoice_id=invoice.pk)
    invoice_push.apply(args=[invoice.pk])

    assert Invoice.objects.get(pk=invoice.pk).stripe_invoice_id == first.stripe_invoice_id
    _assert_charged_once(stripe, first)


def test_credits_go_to_stripe_as_a_negative_item(october_invoice, stripe, django_capture_on_commit_callbacks):
    invoice = october_invoice()
    Invoice.objects.filter(pk=invoice.pk).delete()  # rebuild October with a credit on the account
    credit_grant_create(account=invoice.account, kind="promotion", amount=Decimal("5.00"), description="welcome")
    from apps.billing.services.invoicing import invoice_monthly_create

    with django_capture_on_commit_callbacks(execute=False):
        invoice = invoice_monthly_create(account=invoice.account, month_start=invoice.period_start)

    pushed = invoice_push_run(invoice_id=invoice.pk)

    assert (pushed.subtotal, pushed.credits_applied, pushed.total) == (
        Decimal("15.99"),
        Decimal("5.00"),
        Decimal("10.99"),
    )
    remote = stripe.v1.invoices.retrieve(pushed.stripe_invoice_id)
    assert sorted(line.amount for line in remote.lines.data) == [-500, 105, 1494]
    _assert_charged_once(stripe, pushed)


def test_a_declined_charge_leaves_the_invoice_payment_failed(october_invoice, stripe):
    invoice = october_invoice(card=CARD_CHARGE_FAILS)

    pushed = invoice_push_run(invoice_id=invoice.pk)

    assert pushed.status == St.PAYMENT_FAILED and pushed.last_error
    assert pushed.account.standing == PaymentStanding.GRACE  # dunning starts (engineer A's standing)
    state = stripe_state(stripe, invoice.account.stripe_customer_id)
    assert [i.status for i in state["invoices"]] == ["open"]
    assert not [c for c in state["charges"] if c.status == "succeeded"]
    # the same failure reported again (a webhook after the pay answer) changes nothing
    events = BillingEvent.objects.filter(kind="invoice.payment_failed").count()
    again = invoice_payment_failed_record(stripe_invoice_id=pushed.stripe_invoice_id, reason="declined")
    assert (
        again.status == St.PAYMENT_FAILED
        and BillingEvent.objects.filter(kind="invoice.payment_failed").count() == events
    )
    # and a late failure never undoes a payment
    invoice_paid_record(stripe_invoice_id=pushed.stripe_invoice_id, paid_at=datetime.now(UTC))
    assert invoice_payment_failed_record(stripe_invoice_id=pushed.stripe_invoice_id, reason="x").status == St.PAID


def test_records_for_an_unknown_stripe_invoice_answer_none():
    assert invoice_paid_record(stripe_invoice_id="in_unknown", paid_at=datetime.now(UTC)) is None
    assert invoice_payment_failed_record(stripe_invoice_id="in_unknown", reason="x") is None


def test_an_account_without_a_stripe_customer_stays_draft_with_the_reason(october_invoice):
    invoice = october_invoice()
    type(invoice.account).objects.filter(pk=invoice.account_id).update(stripe_customer_id=None)

    pushed = invoice_push_run(invoice_id=invoice.pk)

    assert pushed.status == St.DRAFT and "no Stripe customer" in pushed.last_error


@pytest.mark.parametrize("when", ["before", "after"])
@override_settings(STRIPE_MAX_NETWORK_RETRIES=0)
def test_an_outage_is_retried_without_a_second_invoice_item_or_charge(when, october_invoice, stripe):
    """`before`: the requests fail before Stripe acts; `after`: Stripe acts and the answer is lost.
    Without the library's own retries, each failure fails the task, which Celery retries."""
    invoice = october_invoice()
    localstripe_outage(api_base=settings.STRIPE_API_BASE, count=3, when=when)

    invoice_push.apply(args=[invoice.pk])  # eager: Celery's retries run at once, in order

    invoice = Invoice.objects.get(pk=invoice.pk)
    assert invoice.status == St.OPEN and invoice.push_attempts == 4  # three failures, then through
    _assert_charged_once(stripe, invoice)


@override_settings(STRIPE_MAX_NETWORK_RETRIES=0)
def test_every_request_losing_its_answer_once_still_charges_once(october_invoice, stripe):
    invoice = october_invoice()
    # items ×2, invoice, finalize, read-back, pay: each acts at Stripe, its answer is lost, the task fails
    failures = 0
    for _ in range(6):
        localstripe_outage(api_base=settings.STRIPE_API_BASE, count=1, when="after")
        with pytest.raises(stripe_lib.APIError, match="Simulated Stripe outage"):
            invoice_push_run(invoice_id=invoice.pk)
        failures += 1
    invoice_push_run(invoice_id=invoice.pk)  # the retry that gets through

    invoice = Invoice.objects.get(pk=invoice.pk)
    assert failures == 6 and invoice.status == St.OPEN and invoice.push_attempts == 7
    _assert_charged_once(stripe, invoice)


def test_a_new_card_pays_the_failed_invoice_and_restores_the_account(october_invoice, stripe):
    # Given an invoice whose charge was declined, and an account in grace
    invoice = october_invoice(card=CARD_CHARGE_FAILS)
    failed = invoice_push_run(invoice_id=invoice.pk)
    assert failed.status == St.PAYMENT_FAILED and failed.account.standing == PaymentStanding.GRACE
    account = failed.account

    # When the owner adds a card that works (made the default) and the retry runs
    good = stripe_client().v1.payment_methods.create(
        params={"type": "card", "card": {"number": CARD_OK, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )
    card_attach(account=account, stripe_payment_method_id=good.id)
    card_default_set(account=account, card=PaymentMethod.objects.get(stripe_payment_method_id=good.id))
    retried = invoices_failed_pay_retry(account_id=account.pk)

    # Then the invoice is paid once, by the new card, and the account may launch again
    assert [i.status for i in retried] == [St.PAID]
    account.refresh_from_db()
    assert account.standing == PaymentStanding.GOOD
    state = stripe_state(stripe, account.stripe_customer_id)
    assert [i.status for i in state["invoices"]] == ["paid"]
    assert [c.amount for c in state["charges"] if c.status == "succeeded"] == [money_to_minor(invoice.total, "USD")]
    # and running the retry again charges nothing more
    assert invoices_failed_pay_retry(account_id=account.pk) == []
    state = stripe_state(stripe, account.stripe_customer_id)
    assert len([c for c in state["charges"] if c.status == "succeeded"]) == 1
