"""Tables for every list page, on django-tables2: sorting by column headers, pagination, one
template (ui/table.html) and the portal's money and state columns.

A list page builds its table with `table_configure(table, params=request.GET)`, and so does its
live consumer with the page's own query (a pushed partial has no request), so a pushed table
keeps the viewer's sort order and page.
"""

from __future__ import annotations

from collections.abc import Mapping

import django_tables2 as tables
from django.http import HttpRequest, QueryDict
from django.template.loader import render_to_string
from django.utils.html import format_html

from portal.live import CSRF_PLACEHOLDER

from .badges import state_tone
from .money import money_format

DEFAULT_PER_PAGE = 25


class PortalTable(tables.Table):
    class Meta:
        template_name = "ui/table.html"
        attrs = {"class": "table"}


def table_configure(table: tables.Table, *, params: QueryDict | Mapping | None, per_page: int = DEFAULT_PER_PAGE):
    """Apply the viewer's `?sort=` and `?page=` to `table` (django-tables2's RequestConfig, which
    wants a request; a live push has only the page's query string). A page number past the end
    shows the last page rather than failing."""
    request = HttpRequest()
    if isinstance(params, QueryDict):
        request.GET = params
    else:
        request.GET = QueryDict(mutable=True)
        for key, value in (params or {}).items():
            request.GET[key] = value
    tables.RequestConfig(request, paginate={"per_page": per_page, "silent": True}).configure(table)
    return table


class MoneyColumn(tables.Column):
    """An amount, right-aligned and formatted by the one money formatter. `currency` is an
    accessor on the row (default `currency`)."""

    def __init__(self, *args, currency: str = "currency", **kwargs):
        self.currency_accessor = tables.A(currency)
        attrs = kwargs.pop("attrs", {})
        attrs.setdefault("td", {"class": "num"})
        attrs.setdefault("th", {"class": "num"})
        super().__init__(*args, attrs=attrs, **kwargs)

    def render(self, value, record):
        currency = self.currency_accessor.resolve(record, quiet=True) or "USD"
        return money_format(value, currency)


class StateColumn(tables.Column):
    """A lifecycle state as the toolkit's badge (ui/badge.html). `label` is an accessor for the
    human label (default: the model's `get_<field>_display`); `testid` goes on the badge."""

    def __init__(self, *args, label: str | None = None, testid: str = "state", **kwargs):
        self.label_accessor = tables.A(label) if label else None
        self.testid = testid
        super().__init__(*args, **kwargs)

    def render(self, value, record, bound_column):
        if self.label_accessor is not None:
            label = self.label_accessor.resolve(record, quiet=True)
        else:
            display = getattr(record, f"get_{bound_column.accessor}_display", None)
            label = display() if callable(display) else value
        context = {"state": value, "label": label, "tone": state_tone(value), "testid": self.testid}
        return render_to_string("ui/badge.html", context)


def cell_forms(template: str, context: dict) -> str:
    """A cell's POST forms (a row's Stop, a member's role). A cell is rendered outside the page's
    template context, so it cannot take the page's CSRF token; a live partial is always rendered
    with the placeholder as its token, and the viewer's own token replaces it afterwards
    (portal.live: the page's {% live_partial %} and the socket's render_partial alike), so the
    cell says the placeholder. A table outside a live partial passes its real `csrf_token`."""
    return render_to_string(template, {"csrf_token": CSRF_PLACEHOLDER, **context})


def link(url: str, text: str):
    return format_html('<a href="{}">{}</a>', url, text)
