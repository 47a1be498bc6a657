"""Invoice pages: the list and the detail are live partials (an invoice turning paid shows at
once), plus a printable page and a CSV export. Thin: selectors scope and shape the reads."""

from __future__ import annotations

import csv
from collections.abc import Mapping

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, QueryDict
from django.shortcuts import render

from apps.accounts.roles import OrgAccess
from apps.accounts.selectors import organization_access_get
from portal.ui.tables import table_configure

from ..filters import InvoiceFilter
from ..selectors.invoices import invoice_csv_rows, invoice_get, invoice_lines_get, invoices_list
from ..tables import InvoiceTable

LIST_PARTIAL = "billing/invoices/partials/invoice_list.html"
DETAIL_PARTIAL = "billing/invoices/partials/invoice_detail.html"


def list_context(access: OrgAccess, params: QueryDict | Mapping | None = None) -> dict:
    """The filtered, sorted page of invoices (two queries: the page and the count). Refuses roles
    that may not see billing (PermissionDenied), as invoices_list does."""
    params = params if params is not None else QueryDict()
    filterset = InvoiceFilter(params or None, queryset=invoices_list(access=access))
    table = table_configure(InvoiceTable(filterset.qs, slug=access.organization.slug), params=params)
    return {
        "access": access,
        "organization": access.organization,
        "table": table,
        "filterset": filterset,
        "filters_active": any(params.get(name) for name in filterset.filters),
    }


def detail_context(access: OrgAccess, invoice_id: int) -> dict:
    invoice = invoice_get(access=access, invoice_id=invoice_id)
    usage, credits = invoice_lines_get(invoice=invoice)
    return {
        "access": access,
        "organization": access.organization,
        "invoice": invoice,
        "lines": usage,
        "credit_lines": credits,
    }


@login_required
def invoice_list_page(request, slug: str):
    access = organization_access_get(user=request.user, slug=slug)
    context = list_context(access, request.GET)
    # The socket renders the same partial with the page's query: filters, sort and page.
    context["ws_query"] = request.GET.urlencode()
    return render(request, "billing/invoices/invoice_list.html", context)


@login_required
def invoice_detail_page(request, slug: str, invoice_id: int):
    access = organization_access_get(user=request.user, slug=slug)
    return render(request, "billing/invoices/invoice_detail.html", detail_context(access, invoice_id))


@login_required
def invoice_print_page(request, slug: str, invoice_id: int):
    access = organization_access_get(user=request.user, slug=slug)
    return render(request, "billing/invoices/invoice_print.html", detail_context(access, invoice_id))


@login_required
def invoice_csv_export(request, slug: str, invoice_id: int):
    access = organization_access_get(user=request.user, slug=slug)
    invoice = invoice_get(access=access, invoice_id=invoice_id)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{invoice.number}.csv"'
    csv.writer(response).writerows(invoice_csv_rows(invoice=invoice))
    return response
