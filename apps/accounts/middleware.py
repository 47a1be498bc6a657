from django.utils.functional import SimpleLazyObject

SESSION_KEY = "current_org_slug"


def _current_membership(request):
    from .selectors import memberships_for_user

    if not request.user.is_authenticated:
        return None
    memberships = memberships_for_user(user=request.user)
    chosen = request.session.get(SESSION_KEY)
    if chosen:
        for membership in memberships:
            if membership.organization.slug == chosen:
                return membership
    return memberships.first()


class CurrentOrganizationMiddleware:
    """Makes `request.current_membership` the organization chosen in the switcher (lazily)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.current_membership = SimpleLazyObject(lambda: _current_membership(request))
        return self.get_response(request)
