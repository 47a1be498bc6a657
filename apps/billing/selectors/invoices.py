"""Reads of invoices, always inside the caller's organization and only for roles that may see
billing. Another tenant's invoice answers 404, like one that does not exist."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from apps.accounts.roles import OrgAccess

from ..models import Invoice, InvoiceLine, InvoiceLineKind


def _require_billing(access: OrgAccess) -> None:
    if not access.can_view_billing:
        raise PermissionDenied("Only owners, admins and billing members see invoices.")


def invoices_list(*, access: OrgAccess) -> QuerySet[Invoice]:
    _require_billing(access)
    return Invoice.objects.filter(account_id=access.organization.pk).order_by("-created_at", "-id")


def invoice_get(*, access: OrgAccess, invoice_id: int) -> Invoice:
    _require_billing(access)
    invoice = Invoice.objects.filter(account_id=access.organization.pk, pk=invoice_id).first()
    if invoice is None:
        raise Http404("No such invoice.")
    return invoice


def invoice_lines_get(*, invoice: Invoice) -> tuple[list[InvoiceLine], list[InvoiceLine]]:
    """(usage lines, credit lines) of the invoice, each usage line with its instance and project."""
    lines = list(invoice.lines.select_related("instance", "project").order_by("id"))
    usage = [line for line in lines if line.kind == InvoiceLineKind.USAGE]
    credits = [line for line in lines if line.kind == InvoiceLineKind.CREDIT]
    return usage, credits


def invoice_csv_rows(*, invoice: Invoice) -> list[list[str]]:
    """The invoice as CSV rows: a header, one row per line, then the totals. Amounts are plain
    decimals in the invoice's currency (no symbols, no thousands separators) for spreadsheets."""
    usage, credits = invoice_lines_get(invoice=invoice)
    rows = [
        ["invoice", "kind", "instance", "project", "flavor", "seconds", "unit_price_per_hour", "amount", "currency"]
    ]
    for line in usage:
        rows.append(
            [
                invoice.number,
                line.kind,
                line.description,
                line.project.name if line.project else "",
                line.flavor_name,
                str(line.seconds),
                str(line.hourly_amount),
                str(line.amount),
                invoice.currency,
            ]
        )
    for line in credits:
        rows.append([invoice.number, line.kind, line.description, "", "", "", "", str(line.amount), invoice.currency])
    for label, amount in (
        ("subtotal", invoice.subtotal),
        ("credits_applied", invoice.credits_applied),
        ("total", invoice.total),
    ):
        rows.append([invoice.number, label, "", "", "", "", "", str(amount), invoice.currency])
    return rows
