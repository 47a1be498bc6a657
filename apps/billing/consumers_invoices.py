"""Live invoice pages: the list and the detail re-render when an invoice changes (e.g. the
webhook marks it paid). Same partials and contexts as the pages."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404

from apps.accounts.selectors import organization_access_get
from portal.live import LivePartialConsumer

from .live_invoices import invoice_group, organization_invoices_group
from .views.invoices import DETAIL_PARTIAL, LIST_PARTIAL, detail_context, list_context

GONE = '<section id="{id}"><p>This is no longer available to you.</p></section>'
REFUSED = (Http404, PermissionDenied)


class _OrgScoped(LivePartialConsumer):
    def _access(self):
        return organization_access_get(user=self.scope["user"], slug=self.scope["url_route"]["kwargs"]["slug"])


class InvoiceListConsumer(_OrgScoped):
    def authorize(self):
        try:
            access = self._access()
            list_context(access)  # refuses roles that may not see billing
        except REFUSED:
            return None
        return [organization_invoices_group(access.organization.pk)]

    def render(self) -> str:
        try:
            # With the page's query (filters, sort, page), which travels in the socket's address.
            return self.render_partial(LIST_PARTIAL, list_context(self._access(), self.page_query()))
        except REFUSED:
            return GONE.format(id="invoice-list")


class InvoiceDetailConsumer(_OrgScoped):
    def authorize(self):
        invoice_id = self.scope["url_route"]["kwargs"]["invoice_id"]
        try:
            detail_context(self._access(), invoice_id)
        except REFUSED:
            return None
        return [invoice_group(invoice_id)]

    def render(self) -> str:
        try:
            context = detail_context(self._access(), self.scope["url_route"]["kwargs"]["invoice_id"])
        except REFUSED:
            return GONE.format(id="invoice-detail")
        return self.render_partial(DETAIL_PARTIAL, context)
