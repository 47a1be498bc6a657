"""Invoice status changes: each is one compare-and-set UPDATE plus a BillingEvent row, so a
webhook delivered twice, a retried task and a reconciler racing each other change it once."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from ...models import BillingEvent, Invoice, InvoiceStatus

St = InvoiceStatus
ALLOWED: dict[str, set[str]] = {
    St.DRAFT: {St.OPEN, St.PAID, St.PAYMENT_FAILED, St.VOID},
    St.OPEN: {St.PAID, St.PAYMENT_FAILED, St.VOID},
    # A failed invoice is paid when the customer's card works again (Stripe retries, or dunning).
    St.PAYMENT_FAILED: {St.OPEN, St.PAID, St.VOID},
    St.PAID: set(),
    St.VOID: set(),
}


@transaction.atomic
def invoice_transition(
    *, invoice_id: int, to_status: str, expected_from: Iterable[str], message: str, **fields
) -> Invoice | None:
    """Move the invoice from one of `expected_from` to `to_status` with `fields` in the same
    UPDATE. None when it was not in an expected state: someone else moved it first."""
    expected = [s for s in expected_from if to_status in ALLOWED[s]]
    invoice = Invoice.objects.select_for_update().filter(pk=invoice_id, status__in=expected).first()
    if invoice is None:
        return None
    now = timezone.now()
    Invoice.objects.filter(pk=invoice.pk, status=invoice.status).update(
        status=to_status, status_changed_at=now, **fields
    )
    BillingEvent.objects.create(
        account_id=invoice.account_id,
        kind=f"invoice.{to_status}",
        message=f"{invoice.number}: {message}"[:500],
        created_at=now,
    )
    invoice.refresh_from_db()
    _announce_on_commit(invoice)
    return invoice


def _announce_on_commit(invoice: Invoice) -> None:
    from ...live_invoices import invoices_changed_on_commit

    invoices_changed_on_commit(organization_id=invoice.account_id, invoice_id=invoice.pk)


def invoice_paid_record(*, stripe_invoice_id: str, paid_at: datetime) -> Invoice | None:
    """Stripe says the invoice is paid (webhook invoice.paid / invoice.payment_succeeded, or the
    reconciler). Idempotent; None for an invoice we do not know."""
    invoice = Invoice.objects.filter(stripe_invoice_id=stripe_invoice_id).first()
    if invoice is None:
        return None
    moved = invoice_transition(
        invoice_id=invoice.pk,
        to_status=St.PAID,
        expected_from=[St.DRAFT, St.OPEN, St.PAYMENT_FAILED],
        message="paid",
        paid_at=paid_at,
        last_error="",
    )
    return moved or Invoice.objects.get(pk=invoice.pk)


def invoice_payment_failed_record(*, stripe_invoice_id: str, reason: str) -> Invoice | None:
    """Stripe could not charge the invoice (webhook invoice.payment_failed, or the pay answer).
    Idempotent; a failure reported after the invoice was paid changes nothing."""
    invoice, _ = invoice_payment_failed_mark(stripe_invoice_id=stripe_invoice_id, reason=reason)
    return invoice


def invoice_payment_failed_mark(*, stripe_invoice_id: str, reason: str) -> tuple[Invoice | None, bool]:
    """As invoice_payment_failed_record, also saying whether this call made the change."""
    invoice = Invoice.objects.filter(stripe_invoice_id=stripe_invoice_id).first()
    if invoice is None:
        return None, False
    reason = (reason or "The card was declined.").strip()
    moved = invoice_transition(
        invoice_id=invoice.pk,
        to_status=St.PAYMENT_FAILED,
        expected_from=[St.DRAFT, St.OPEN],
        message=f"payment failed: {reason}",
        last_error=reason[:500],
    )
    return (moved or Invoice.objects.get(pk=invoice.pk)), moved is not None
