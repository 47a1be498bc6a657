"""The live capacity calendar of an organization: members only (another tenant's socket is refused)."""

from __future__ import annotations

from django.http import Http404

from apps.accounts.selectors import organization_access_get
from portal.live import LivePartialConsumer

from .live_reservations import reservations_group
from .views_reservations import RESERVATIONS_PARTIAL, reservations_context

GONE = '<section id="reservations"><p>This is no longer available to you.</p></section>'


class ReservationsConsumer(LivePartialConsumer):
    """Pushes the calendar partial (Gantt and table) with the page's sort and page (its query string)."""

    def _access(self):
        return organization_access_get(user=self.scope["user"], slug=self.scope["url_route"]["kwargs"]["slug"])

    def authorize(self):
        try:
            return [reservations_group(self._access().organization.pk)]
        except Http404:
            return None

    def render(self) -> str:
        try:
            return self.render_partial(
                RESERVATIONS_PARTIAL, reservations_context(access=self._access(), params=self.page_query())
            )
        except Http404:
            return GONE
