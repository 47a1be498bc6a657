"""Through the real pieces: Celery beat's task on a real worker closes last month, the worker
pushes the invoice to localstripe and charges the card, and localstripe's own signed invoice.paid
webhook reaches the live portal, which marks the invoice PAID."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.billing.models import BillingEvent, Invoice, InvoiceKind, InvoiceStatus, WebhookEvent
from apps.billing.selectors.usage import month_bounds
from apps.billing.tasks.invoicing import invoices_close
from tests.factories.billing import (
    CARD_CHARGE_FAILS,
    CARD_OK,
    BillingAccountFactory,
    InstanceFactory,
    run_record,
    stripe_customer_with_card,
)
from tests.support.waiting import wait_until as eventually

from .conftest import stripe_state

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _last_month_usage(card: str):
    account = BillingAccountFactory()
    stripe_customer_with_card(account, card)
    this_month, _ = month_bounds(timezone.now())
    last_month, _ = month_bounds(this_month - timedelta(days=1))
    instance = InstanceFactory(organization=account.organization, name="trainer")
    run_record(
        instance=instance,
        started_at=last_month + timedelta(days=3),
        ended_at=last_month + timedelta(days=3, hours=2, seconds=30),
        hourly_amount="2.490000",
    )
    return account, last_month


def test_last_month_is_invoiced_charged_and_paid_through_the_webhook(stripe_webhooks_live, celery_worker, stripe):
    account, last_month = _last_month_usage(CARD_OK)

    invoices_close.delay()

    def paid():
        """the invoice is paid"""
        return Invoice.objects.filter(account=account, status=InvoiceStatus.PAID).first()

    invoice = eventually(paid)
    assert invoice.kind == InvoiceKind.MONTHLY and invoice.period_start == last_month
    assert invoice.credits_applied == 0 and invoice.total == invoice.subtotal == Decimal("5.00")  # 7230 s × 2.49/h
    assert invoice.finalized_at and invoice.paid_at and invoice.stripe_invoice_id
    # PAID came from localstripe's webhook, handled by the live portal
    delivered = WebhookEvent.objects.filter(
        type__in=["invoice.paid", "invoice.payment_succeeded"], payload__data__object__id=invoice.stripe_invoice_id
    )
    assert delivered.exists()
    assert BillingEvent.objects.filter(account=account, kind="invoice.paid").count() == 1
    state = stripe_state(stripe, account.stripe_customer_id)
    assert [i.id for i in state["invoices"]] == [invoice.stripe_invoice_id]
    assert [c.amount for c in state["charges"] if c.status == "succeeded"] == [500]
    # a second close finds nothing new to invoice
    invoices_close.delay()
    time.sleep(1)  # not an assertion on time: gives the worker the chance to (wrongly) invoice again
    assert Invoice.objects.filter(account=account).count() == 1


def test_a_declined_card_leaves_the_invoice_payment_failed(stripe_webhooks_live, celery_worker):
    account, _ = _last_month_usage(CARD_CHARGE_FAILS)

    invoices_close.delay()

    def failed():
        """the invoice's payment failed"""
        return Invoice.objects.filter(account=account, status=InvoiceStatus.PAYMENT_FAILED).first()

    invoice = eventually(failed)
    assert invoice.last_error and invoice.paid_at is None
    account.refresh_from_db()
    assert account.standing == "grace"
