"""How API views find the caller's organization. Keys are confined to their own organization."""

from portal.api import PortalApiMixin

from ..models import ApiKey
from ..roles import OrgAccess
from ..selectors import organization_access_get


def request_api_key(request) -> ApiKey | None:
    return request.auth if isinstance(request.auth, ApiKey) else None


def api_access(request, slug: str) -> OrgAccess:
    return organization_access_get(user=request.user, slug=slug, api_key=request_api_key(request))


class OrganizationScopedMixin(PortalApiMixin):
    """For views under /organizations/{slug}/: `self.access` is resolved once, 404 for strangers.
    Brings the API-wide input guards and error schema of portal.api."""

    @property
    def access(self) -> OrgAccess:
        if not hasattr(self, "_access"):
            self._access = api_access(self.request, self.kwargs["org_slug"])
        return self._access
