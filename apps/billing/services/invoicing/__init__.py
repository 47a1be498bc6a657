"""Invoices: built from usage records (build), their status (status), pushed to Stripe (push),
paid again after a failure (retry)."""

from .build import (
    invoice_monthly_create,
    invoice_threshold_create,
    invoices_due_create,
    records_uninvoiced,
)
from .push import InvoicePushBusy, invoice_push_run, invoice_stripe_sync
from .retry import invoices_failed_pay_retry
from .status import invoice_paid_record, invoice_payment_failed_record, invoice_transition

__all__ = [
    "InvoicePushBusy",
    "invoice_monthly_create",
    "invoice_paid_record",
    "invoice_payment_failed_record",
    "invoice_push_run",
    "invoice_stripe_sync",
    "invoice_threshold_create",
    "invoice_transition",
    "invoices_due_create",
    "invoices_failed_pay_retry",
    "records_uninvoiced",
]
