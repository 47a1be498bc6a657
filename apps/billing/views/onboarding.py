"""The first-run checklist's one action: dismiss it."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from ..services.onboarding import onboarding_dismiss


@login_required
@require_POST
def onboarding_dismiss_view(request):
    onboarding_dismiss(user=request.user)
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        back = "accounts:dashboard"
    return redirect(back)
