"""Invoicing tasks: push one invoice to Stripe, and the periodic close. Tasks take ids, are
idempotent, and retry only transient errors (Stripe unreachable or failing on its side, or another
worker pushing the same account)."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from ..models import Invoice, InvoiceStatus
from ..services.invoicing import (
    InvoicePushBusy,
    invoice_push_run,
    invoice_stripe_sync,
    invoices_due_create,
    invoices_failed_pay_retry,
)
from ..services.metering import usage_open_runs_meter
from ..stripe_api import STRIPE_TRANSIENT_ERRORS

# A draft this old was not pushed (its task failed for good, or was lost): push it again.
STUCK_DRAFT_AFTER = timedelta(minutes=2)
# An open invoice this old has had time for its webhook: read it back from Stripe.
OPEN_SYNC_AFTER = timedelta(minutes=15)


@shared_task(
    autoretry_for=(*STRIPE_TRANSIENT_ERRORS, InvoicePushBusy),
    retry_backoff=2,
    retry_backoff_max=600,
    max_retries=10,
    acks_late=True,
    ignore_result=True,
)
def invoice_push(invoice_id: int) -> str:
    return invoice_push_run(invoice_id=invoice_id).status


@shared_task(autoretry_for=STRIPE_TRANSIENT_ERRORS, retry_backoff=2, max_retries=5, ignore_result=True)
def invoice_sync(invoice_id: int) -> str:
    return invoice_stripe_sync(invoice_id=invoice_id).status


@shared_task(autoretry_for=STRIPE_TRANSIENT_ERRORS, retry_backoff=2, max_retries=5, ignore_result=True)
def invoices_failed_retry(account_id: int) -> int:
    """A new default card: pay the account's failed invoices with it."""
    return len(invoices_failed_pay_retry(account_id=account_id))


@shared_task(ignore_result=True)
def invoices_close() -> dict[str, int]:
    """Beat: cut open runs up to now (so last month's final seconds are records before its
    invoice is made), invoice what is due, and re-queue invoices a failed push left behind."""
    now = timezone.now()
    usage_open_runs_meter(now=now)
    made = invoices_due_create(now=now)
    stuck = list(
        Invoice.objects.filter(
            status=InvoiceStatus.DRAFT, total__gt=0, created_at__lt=now - STUCK_DRAFT_AFTER
        ).values_list("pk", flat=True)
    )
    for invoice_id in stuck:
        invoice_push.delay(invoice_id)
    stale = list(
        Invoice.objects.filter(
            status=InvoiceStatus.OPEN, stripe_invoice_id__isnull=False, status_changed_at__lt=now - OPEN_SYNC_AFTER
        ).values_list("pk", flat=True)
    )
    for invoice_id in stale:
        invoice_sync.delay(invoice_id)
    return {"created": len(made), "requeued": len(stuck), "synced": len(stale)}
