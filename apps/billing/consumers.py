"""Live billing pages over websockets (see portal/live.py)."""

from django.core.exceptions import PermissionDenied
from django.http import Http404

from apps.instances.live import organization_instances_group
from portal.live import LivePartialConsumer

from .live import organization_billing_group
from .views.overview import OVERVIEW_PARTIAL, billing_access_get, overview_context

GONE = '<section id="billing-overview"><p>This is no longer available to you.</p></section>'


class BillingOverviewConsumer(LivePartialConsumer):
    """Re-renders the overview when an instance of the organization changes state (running costs
    start and stop) or when billing itself changes (standing, credits, budgets, alerts)."""

    def _access(self):
        return billing_access_get(user=self.scope["user"], slug=self.scope["url_route"]["kwargs"]["slug"])

    def authorize(self):
        try:
            organization_id = self._access().organization.pk
        except (Http404, PermissionDenied):
            return None
        return [organization_billing_group(organization_id), organization_instances_group(organization_id)]

    def render(self) -> str:
        try:
            return self.render_partial(OVERVIEW_PARTIAL, overview_context(self._access()))
        except (Http404, PermissionDenied):
            return GONE
