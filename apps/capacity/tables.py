"""Tables of the operators' pages (portal.ui.tables): the inventory's nodes and the registration
tokens. Cells reuse the pages' own snippets (simulated badge, heartbeat) so they read alike."""

from __future__ import annotations

import django_tables2 as tables
from django.template.defaultfilters import floatformat
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from portal.ui.tables import PortalTable, StateColumn

from .models import Node, RegistrationToken

NUM = {"td": {"class": "num"}, "th": {"class": "num"}}
MUTED = {"td": {"class": "muted"}}


class NodeTable(PortalTable):
    """Over selectors.inventory.nodes_list() (its annotations: gpu_count, gpu_name, …)."""

    hostname = tables.Column(verbose_name="Host")
    region = tables.Column(verbose_name="Region", accessor="region__code")
    # The state's value as its words: what operators type in filters and read in the node's events.
    state = StateColumn(verbose_name="State", label="state", testid="node-state")
    gpus = tables.Column(verbose_name="GPUs", accessor="gpu_count", order_by=("gpu_count", "gpu_name"))
    allocated = tables.Column(verbose_name="Allocated GPUs", accessor="allocated_milli_total", attrs=NUM)
    allocations = tables.Column(verbose_name="Allocations", accessor="allocations_live", attrs=NUM)
    utilization = tables.Column(verbose_name="Avg. utilisation", accessor="utilization_avg_pct", attrs=NUM,
                                empty_values=())
    heartbeat = tables.Column(verbose_name="Last heartbeat", accessor="last_heartbeat_at", attrs=NUM,
                              empty_values=())

    class Meta(PortalTable.Meta):
        attrs = {"class": "table", "data-testid": "nodes"}
        row_attrs = {"data-node": lambda record: record.pk, "data-hostname": lambda record: record.hostname}
        order_by = ("region", "hostname")

    def __init__(self, data, *, filtered: bool = False, **kwargs):
        if filtered:
            kwargs.setdefault("empty_text", "No node matches these filters.")
        else:
            registration = reverse("capacity:registration-tokens")
            kwargs.setdefault("empty_text", format_html(
                'No nodes yet. Create a <a href="{}">registration token</a> and start the agent on a GPU host.',
                registration,
            ))
        super().__init__(data, **kwargs)

    def render_hostname(self, value, record: Node):
        simulated = render_to_string("capacity/_simulated_badge.html") if record.simulated else ""
        return format_html('<a href="{}">{}</a> {}', reverse("capacity:node-detail", args=[record.pk]), value,
                           simulated)

    def render_region(self, value):
        return format_html("<code>{}</code>", value)

    def render_gpus(self, record: Node):
        if not record.gpu_count:
            gpus = mark_safe('<span class="muted">none</span>')
        else:
            mixed = ""
            if record.gpu_name_last != record.gpu_name:
                mixed = mark_safe(' <span class="muted">(mixed)</span>')
            gpus = format_html("{} × {}{}", record.gpu_count, record.gpu_name, mixed)
        if record.gpus_unhealthy:
            gpus = format_html('{} <span class="badge badge-err">{} unhealthy</span>', gpus, record.gpus_unhealthy)
        return gpus

    def render_allocated(self, record: Node):
        return f"{record.allocated_gpus} / {record.gpu_count}"

    def render_utilization(self, value):
        return mark_safe('<span class="muted">—</span>') if value is None else f"{floatformat(value, 0)}%"

    def render_heartbeat(self, record: Node):
        return render_to_string("capacity/_heartbeat.html", {"node": record})


class RegistrationTokenTable(PortalTable):
    created_at = tables.DateTimeColumn(verbose_name="Created (UTC)", format="Y-m-d H:i", attrs=MUTED)
    region = tables.Column(verbose_name="Region", accessor="region__code")
    note = tables.Column(verbose_name="Note", default="—")
    created_by = tables.Column(verbose_name="By", accessor="created_by__email", default="—")
    expires_at = tables.DateTimeColumn(verbose_name="Expires (UTC)", format="Y-m-d H:i", attrs=MUTED)
    status = tables.Column(verbose_name="Status", accessor="pk", orderable=False, empty_values=())

    class Meta(PortalTable.Meta):
        attrs = {"class": "table", "data-testid": "tokens"}
        row_attrs = {"data-token": lambda record: record.pk}
        empty_text = "No registration tokens yet."

    def render_region(self, value):
        return format_html("<code>{}</code>", value)

    def render_status(self, record: RegistrationToken):
        return render_to_string("capacity/_token_status.html", {"token": record})
