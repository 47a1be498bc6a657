from django.http import Http404

from portal.live import LivePartialConsumer

from .selectors import organization_access_get
from .services import members_group
from .views.members import MEMBERS_PARTIAL, members_context

NO_LONGER_MEMBER = '<section id="members" data-testid="members"><p>You are no longer a member here.</p></section>'


class MembersConsumer(LivePartialConsumer):
    """Pushes the members partial of one organization to its members' open pages."""

    def _access(self):
        return organization_access_get(user=self.scope["user"], slug=self.scope["url_route"]["kwargs"]["slug"])

    def authorize(self):
        try:
            return [members_group(self._access().organization)]
        except Http404:
            return None

    def render(self) -> str:
        # Access is looked up again on every push: a member removed or demoted meanwhile must
        # not keep seeing (or be offered) what their old role allowed.
        try:
            access = self._access()
        except Http404:
            return NO_LONGER_MEMBER
        # With the page's query (the table's sort and page), which travels in the socket's address.
        return self.render_partial(MEMBERS_PARTIAL, members_context(access, params=self.page_query()))
