from django.http import Http404

from apps.accounts.selectors import organization_access_get
from portal.live import LivePartialConsumer

from .live import instance_group, organization_instances_group
from .views.pages import DETAIL_PARTIAL, LIST_PARTIAL, detail_context, list_context

GONE = '<section id="{id}"><p>This is no longer available to you.</p></section>'


class _OrgScoped(LivePartialConsumer):
    def _access(self):
        return organization_access_get(user=self.scope["user"], slug=self.scope["url_route"]["kwargs"]["slug"])


class InstanceListConsumer(_OrgScoped):
    def authorize(self):
        try:
            return [organization_instances_group(self._access().organization.pk)]
        except Http404:
            return None

    def render(self) -> str:
        try:
            # With the page's query (filters, sort, page), which travels in the socket's address.
            return self.render_partial(LIST_PARTIAL, list_context(self._access(), self.page_query()))
        except Http404:
            return GONE.format(id="instance-list")


class InstanceDetailConsumer(_OrgScoped):
    def authorize(self):
        try:
            access = self._access()
            instance_id = self.scope["url_route"]["kwargs"]["instance_id"]
            detail_context(access, instance_id)  # 404 unless the instance is in this organization
        except Http404:
            return None
        return [instance_group(instance_id)]

    def render(self) -> str:
        try:
            context = detail_context(self._access(), self.scope["url_route"]["kwargs"]["instance_id"])
        except Http404:
            return GONE.format(id="instance-detail")
        return self.render_partial(DETAIL_PARTIAL, context)
