"""Setting an instance's labels from its page. A bad pair shows the page again (400) with an
error under the field and what was typed kept; others' instances are 403 for members, and
another organization's are 404."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.selectors import organization_access_get
from apps.accounts.views.common import add_service_errors

from ..forms_labels import InstanceLabelsForm
from ..selectors import instance_get
from ..services.labels import instance_labels_set
from .pages import detail_context


@login_required
@require_POST
def instance_labels_view(request, slug: str, instance_id):
    access = organization_access_get(user=request.user, slug=slug)
    instance = instance_get(access=access, instance_id=instance_id)
    form = InstanceLabelsForm(request.POST)
    if form.is_valid():
        try:
            instance_labels_set(access=access, instance=instance, labels=form.cleaned_data["labels"])
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Labels of {instance.name} saved.")
            return redirect("instances:detail", slug=slug, instance_id=instance.pk)
    context = {**detail_context(access, instance_id), "labels_form": form}
    return render(request, "instances/instance_detail.html", context, status=400)
