"""The instance list's table (portal.ui.tables): what a GPU-cloud user looks for in a list of
instances. Built by views.pages.list_context for the page and its live socket alike."""

from __future__ import annotations

from datetime import datetime

import django_tables2 as tables
from django.urls import reverse
from django.utils import timezone

from apps.accounts.roles import OrgAccess
from apps.catalog.models import OfferingKind
from portal.ui.money import money_format
from portal.ui.tables import PortalTable, StateColumn, cell_forms, link
from portal.ui.templatetags.ui import duration_short

from .hooks import InstanceCost
from .models import Instance, InstanceState

S = InstanceState
# What a person may stop (instances.services.actions.instance_stop_request moves these).
STOPPABLE = {S.QUEUED, S.REQUESTED, S.SCHEDULED, S.PROVISIONING, S.RUNNING}
ROW_ACTIONS = "instances/partials/_row_actions.html"


class InstanceTable(PortalTable):
    name = tables.Column(verbose_name="Name")
    state = StateColumn(verbose_name="State")
    gpu = tables.Column(
        verbose_name="GPU", accessor="flavor__accelerator_label",
        order_by=("flavor__gpu_model__name", "flavor__gpu_count", "flavor__slice_kind"),
    )
    region = tables.Column(verbose_name="Region", accessor="region__code", order_by=("region__code",))
    uptime = tables.Column(verbose_name="Uptime", accessor="pk", orderable=False, empty_values=(),
                           attrs={"td": {"class": "num", "data-testid": "uptime"}, "th": {"class": "num"}})
    cost = tables.Column(verbose_name="Cost so far", accessor="pk", orderable=False, empty_values=(),
                         attrs={"td": {"class": "num price", "data-testid": "cost"}, "th": {"class": "num"}})
    owner = tables.Column(verbose_name="Owner", accessor="owner__email", order_by=("owner__email",),
                          attrs={"td": {"class": "muted"}})
    actions = tables.Column(verbose_name="", accessor="pk", orderable=False, empty_values=(),
                            attrs={"td": {"class": "actions"}})

    class Meta(PortalTable.Meta):
        row_attrs = {"data-instance": lambda record: record.name, "data-state": lambda record: record.state}
        empty_text = "No instance matches these filters."

    def __init__(self, data, *, access: OrgAccess, now: datetime | None = None, **kwargs):
        super().__init__(data, **kwargs)
        self.access = access
        self.slug = access.organization.slug
        self.now = now or timezone.now()
        # Filled by `costs_attach` once the page's rows are known (one query for the page).
        self.costs: dict = {}

    def render_name(self, value, record):
        return link(reverse("instances:detail", args=[self.slug, record.pk]), value)

    def render_uptime(self, record):
        """Since the agent confirmed the workload up (its runtime's started_at), while running."""
        runtime = getattr(record, "runtime", None) if record.state == S.RUNNING else None
        if runtime is None or runtime.started_at is None:
            return "—"
        return duration_short((self.now - runtime.started_at).total_seconds())

    def render_cost(self, record):
        cost: InstanceCost | None = self.costs.get(record.pk)
        return money_format(cost.amount, cost.currency) if cost is not None else "—"

    def render_actions(self, record: Instance):
        may_operate = record.owner_id == self.access.user_id or self.access.can_manage_members
        context = {
            "instance": record,
            "slug": self.slug,
            "open": record.state == S.RUNNING and record.offering.kind == OfferingKind.NOTEBOOK and may_operate,
            "stop": record.state in STOPPABLE and may_operate,
        }
        return cell_forms(ROW_ACTIONS, context)  # the CSRF token: see cell_forms
