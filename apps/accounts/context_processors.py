from .selectors import memberships_for_user


def organizations(request):
    """The organization switcher's entries, for every page's header."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "switcher_memberships": memberships_for_user(user=user),
        "current_membership": getattr(request, "current_membership", None),
    }
