"""Tables of the capacity calendar (portal.ui.tables): a customer's reservations, and every
tenant's for operators. Over selectors.reservations' querysets, whose joins they read."""

from __future__ import annotations

import django_tables2 as tables
from django.urls import reverse
from django.utils.html import format_html

from portal.ui.money import money_format
from portal.ui.tables import PortalTable, StateColumn, cell_forms

from .models import Reservation, ReservationState

NUM = {"td": {"class": "num"}, "th": {"class": "num"}}
WINDOW_FORMAT = "%Y-%m-%d %H:%M"


class ReservationTable(PortalTable):
    what = tables.Column(verbose_name="Capacity", accessor="gpus", order_by=("gpu_model__name", "gpus"))
    flavor = tables.Column(verbose_name="Flavor", accessor="flavor__name")
    region = tables.Column(verbose_name="Region", accessor="region__code")
    starts_at = tables.Column(verbose_name="Starts (UTC)")
    ends_at = tables.Column(verbose_name="Ends (UTC)")
    state = StateColumn(verbose_name="State", testid="reservation-state")
    reason = tables.Column(verbose_name="Why", orderable=False, attrs={"td": {"class": "muted"}})
    price = tables.Column(verbose_name="Price / hour", accessor="hourly_amount", attrs=NUM, orderable=False)
    actions = tables.Column(verbose_name="", accessor="pk", orderable=False)

    class Meta(PortalTable.Meta):
        attrs = {"class": "table", "data-testid": "reservations"}
        row_attrs = {"data-reservation": lambda record: record.pk}
        empty_text = "No reservations yet."

    def __init__(self, data, *, slug: str = "", can_cancel: bool = False, **kwargs):
        self.slug, self.can_cancel = slug, can_cancel
        if not can_cancel:
            kwargs.setdefault("exclude", ("actions",))
        super().__init__(data, **kwargs)

    def render_what(self, record: Reservation):
        return record.what

    def render_region(self, value):
        return format_html("<code>{}</code>", value)

    def render_starts_at(self, value):
        return f"{value:{WINDOW_FORMAT}}"

    def render_ends_at(self, value):
        return f"{value:{WINDOW_FORMAT}}"

    def render_price(self, record: Reservation):
        """The quote: the hourly total of the window (list price per flavor × units)."""
        return money_format(record.hourly_amount * record.units, record.currency)

    def render_actions(self, record: Reservation):
        if record.state not in (ReservationState.SCHEDULED, ReservationState.SHORT):
            return ""
        url = reverse("capacity-reservations:cancel", args=[self.slug, record.pk])
        # Inside the live partial: the CSRF placeholder, swapped for the viewer's token (portal.live).
        return cell_forms("capacity/partials/_reservation_cancel.html", {"url": url})


class OperatorReservationTable(ReservationTable):
    organization = tables.Column(verbose_name="Organization", accessor="organization__name")

    class Meta(ReservationTable.Meta):
        sequence = ("organization", "...")
        attrs = {"class": "table", "data-testid": "ops-reservations"}
