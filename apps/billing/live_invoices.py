"""Channels groups that invoice changes are announced to (the invoice pages are live partials)."""

from __future__ import annotations

from portal.live import live_notify_on_commit

from .live import billing_changed_on_commit


def organization_invoices_group(organization_id) -> str:
    return f"org-{organization_id}-invoices"


def invoice_group(invoice_id) -> str:
    return f"invoice-{invoice_id}"


def invoices_changed_on_commit(*, organization_id, invoice_id) -> None:
    live_notify_on_commit(group=organization_invoices_group(organization_id))
    live_notify_on_commit(group=invoice_group(invoice_id))
    billing_changed_on_commit(organization_id=organization_id)
