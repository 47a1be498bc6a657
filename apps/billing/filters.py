"""The invoice list's filters: one FilterSet for the page's filter bar and the API's list
(`filterset_class`). A bad value is a 400 with a reason in the API and a message on the page."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import django_filters
from django import forms
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from .models import Invoice, InvoiceStatus

_STATUSES = ", ".join(InvoiceStatus.values)
_MONTH = re.compile(r"(\d{4})-(\d{2})")


class MonthField(forms.CharField):
    """A calendar month as YYYY-MM (what an <input type="month"> sends): [its first instant,
    the next month's first instant), in UTC like the invoices' periods."""

    widget = forms.TextInput(attrs={"type": "month", "placeholder": "YYYY-MM"})
    default_error_messages = {"invalid": "Give the period as a month, YYYY-MM (e.g. 2025-10)."}

    def to_python(self, value):
        value = super().to_python(value)
        if not value:
            return None
        match = _MONTH.fullmatch(value)
        year, month = (int(match[1]), int(match[2])) if match else (0, 0)
        if not (2000 <= year <= 2999 and 1 <= month <= 12):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        start = datetime(year, month, 1, tzinfo=UTC)
        end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        return start, end


@extend_schema_field(OpenApiTypes.STR)
class MonthFilter(django_filters.Filter):
    """Invoices whose period overlaps the month (a monthly invoice's is the month itself)."""

    field_class = MonthField

    def filter(self, qs, value):
        if not value:
            return qs
        start, end = value
        return qs.filter(period_start__lt=end, period_end__gt=start)


class InvoiceFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(
        choices=InvoiceStatus.choices, empty_label="Any status", label="Status",
        error_messages={"invalid_choice": f"Unknown status '%(value)s'. Use one of: {_STATUSES}."},
    )
    period = MonthFilter(label="Period (month)")

    class Meta:
        model = Invoice
        fields = ["status", "period"]
