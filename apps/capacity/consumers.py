"""Live operators' pages: the inventory overview and one node's page, staff only."""

from __future__ import annotations

from django.http import Http404
from django.template.loader import render_to_string

from portal.live import LivePartialConsumer

from .live import INVENTORY_GROUP, node_group
from .selectors.inventory import node_get
from .views import INVENTORY_PARTIAL, NODE_PARTIAL, inventory_context, is_operator, node_context


class InventoryConsumer(LivePartialConsumer):
    """Pushes the overview partial, with the filters, sort and page the page was opened with (its query string)."""

    def authorize(self):
        if not is_operator(self.scope["user"]):
            return None
        self.query = self.page_query()
        return [INVENTORY_GROUP]

    def render(self) -> str:
        return self.render_partial(INVENTORY_PARTIAL, inventory_context(params=self.query))


class NodeConsumer(LivePartialConsumer):
    """Pushes one node's partial: its state, GPUs and telemetry, allocations and events."""

    def authorize(self):
        if not is_operator(self.scope["user"]):
            return None
        self.node_id = self.scope["url_route"]["kwargs"]["node_id"]
        try:
            node_get(node_id=self.node_id)
        except Http404:
            return None
        return [node_group(self.node_id)]

    def render(self) -> str:
        try:
            context = node_context(node_id=self.node_id)
        except Http404:
            # Deleted (e.g. from the admin) while the page was open: say so instead of dropping the socket.
            return render_to_string(NODE_PARTIAL, {"node": None})
        return self.render_partial(NODE_PARTIAL, context)
