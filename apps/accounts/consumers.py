from django.template.loader import render_to_string

from portal.live import LivePartialConsumer

from .selectors import organization_access_get
from .services import members_group
from .views.members import MEMBERS_PARTIAL, members_context


class MembersConsumer(LivePartialConsumer):
    """Pushes the members partial of one organization to its members' open pages."""

    def authorize(self):
        from django.http import Http404

        try:
            self.access = organization_access_get(
                user=self.scope["user"], slug=self.scope["url_route"]["kwargs"]["slug"]
            )
        except Http404:
            return None
        return [members_group(self.access.organization)]

    def render(self) -> str:
        return render_to_string(MEMBERS_PARTIAL, members_context(self.access))
