"""The front proxy's question for every notebook request: may this browser reach /nb/<slot>/,
and on which Unix socket does it run? See devtools/proxy.py."""

from __future__ import annotations

import hmac
import re

from django.conf import settings
from django.http import HttpResponse

from apps.accounts.models import Membership

from ..selectors import runtime_for_route

ROUTE = re.compile(r"^/nb/(?P<slot>[A-Za-z0-9-]{1,64})/")


def notebook_may_open(*, user, instance) -> bool:
    """The owner, and the owners and admins of the instance's organization (course staff, later)."""
    if not user.is_authenticated:
        return False
    if instance.owner_id == user.pk:
        return True
    return Membership.objects.filter(
        organization_id=instance.organization_id, user=user, role__in=["owner", "admin"]
    ).exists()


def notebook_auth(request):
    secret = request.headers.get("X-Proxy-Secret", "")
    if not hmac.compare_digest(secret, settings.PROXY_SHARED_SECRET):
        return HttpResponse("Only the front proxy may ask.", status=403)
    match = ROUTE.match(request.headers.get("X-Original-URI", ""))
    runtime = runtime_for_route(route_slot=match["slot"]) if match else None
    if runtime is None:
        # nginx's auth_request passes on only 401 and 403; the header turns this into a 404.
        missing = HttpResponse("No running notebook here.", status=403)
        missing["X-Notebook-Missing"] = "1"
        return missing
    if not request.user.is_authenticated:
        return HttpResponse("Log in first.", status=401)
    if not notebook_may_open(user=request.user, instance=runtime.instance):
        return HttpResponse("This notebook belongs to someone else.", status=403)
    response = HttpResponse(status=200)
    response["X-Notebook-Socket"] = runtime.socket
    response["Cache-Control"] = "private, no-store"
    return response
