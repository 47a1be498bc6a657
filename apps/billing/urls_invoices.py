"""Billing URLs: invoices."""

from django.urls import path

from .views import invoices

urlpatterns: list = [
    path("orgs/<slug:slug>/billing/invoices/", invoices.invoice_list_page, name="billing-invoices"),
    path(
        "orgs/<slug:slug>/billing/invoices/<int:invoice_id>/",
        invoices.invoice_detail_page,
        name="billing-invoice-detail",
    ),
    path(
        "orgs/<slug:slug>/billing/invoices/<int:invoice_id>/print/",
        invoices.invoice_print_page,
        name="billing-invoice-print",
    ),
    path(
        "orgs/<slug:slug>/billing/invoices/<int:invoice_id>/csv/",
        invoices.invoice_csv_export,
        name="billing-invoice-csv",
    ),
]
