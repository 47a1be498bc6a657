"""Tables of the billing pages (portal.ui.tables): the invoice list."""

from __future__ import annotations

import django_tables2 as tables
from django.urls import reverse
from django.utils.dateformat import format as date_format
from django.utils.html import format_html

from portal.ui.tables import MoneyColumn, PortalTable, StateColumn, link

from .models import Invoice


class InvoiceTable(PortalTable):
    number = tables.Column(verbose_name="Number")
    period = tables.Column(verbose_name="Period", accessor="period_start", order_by=("period_start", "id"))
    kind = tables.Column(verbose_name="Kind")
    total = MoneyColumn(verbose_name="Total")
    status = StateColumn(verbose_name="Status", testid="invoice-status")
    actions = tables.Column(verbose_name="", accessor="pk", orderable=False, empty_values=(),
                            attrs={"td": {"class": "actions"}})

    class Meta(PortalTable.Meta):
        row_attrs = {"data-invoice": lambda record: record.number}
        empty_text = "No invoices yet. Usage is invoiced after each calendar month."

    def __init__(self, data, *, slug: str, **kwargs):
        super().__init__(data, **kwargs)
        self.slug = slug

    def render_number(self, value, record: Invoice):
        return link(reverse("billing-invoice-detail", args=[self.slug, record.pk]), value)

    def render_period(self, record: Invoice):
        return f"{date_format(record.period_start, 'Y-m-d H:i')} – {date_format(record.period_end, 'Y-m-d H:i')} UTC"

    def render_kind(self, record: Invoice):
        return record.get_kind_display()

    def render_actions(self, record: Invoice):
        return format_html(
            '<a href="{}">Print</a> · <a href="{}">CSV</a>',
            reverse("billing-invoice-print", args=[self.slug, record.pk]),
            reverse("billing-invoice-csv", args=[self.slug, record.pk]),
        )
