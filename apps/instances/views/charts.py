"""The instance page's GPU usage chart on its own, for its 15-second poll (the page itself
includes the same partial, and live pushes carry it too)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from apps.accounts.selectors import organization_access_get

from ..selectors import instance_get, instance_gpus

USAGE_CHART_PARTIAL = "instances/partials/usage_chart.html"


@login_required
def instance_usage_chart_view(request, slug: str, instance_id):
    """Another tenant's instance is 404 (instance_get looks it up in the caller's organization)."""
    access = organization_access_get(user=request.user, slug=slug)
    instance = instance_get(access=access, instance_id=instance_id)
    context = {"organization": access.organization, "instance": instance, "gpus": instance_gpus(instance=instance)}
    return render(request, USAGE_CHART_PARTIAL, context)
