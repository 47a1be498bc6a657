"""Invoices: built from usage records (build), their status (status), pushed to Stripe (push)."""

from .build import (
    invoice_monthly_create,
    invoice_threshold_create,
    invoices_due_create,
    records_uninvoiced,
)
from .push import InvoicePushBusy, invoice_push_run, invoice_stripe_sync
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
    "records_uninvoiced",
]
