"""A project's labels page: key=value pairs chargeback groups and filters by. Owners and admins
change them (others 403, another organization's project 404); a bad pair is an error under the
field, with what was typed kept."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect, render

from ..forms import ProjectLabelsForm
from ..selectors import project_get
from ..services import project_labels_set
from .common import access_for, add_service_errors


@login_required
def project_labels_view(request, slug: str, project_id: int):
    access = access_for(request, slug)
    project = project_get(organization=access.organization, project_id=project_id)
    if not access.can_manage_projects:
        raise PermissionDenied("Only owners and admins change a project's labels.")
    form = ProjectLabelsForm(request.POST if request.method == "POST" else None, initial={"labels": project.labels})
    if request.method == "POST" and form.is_valid():
        try:
            project_labels_set(access=access, project=project, labels=form.cleaned_data["labels"])
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Labels of {project.name} saved.")
            return redirect("accounts:organization-detail", slug=slug)
    context = {"access": access, "organization": access.organization, "project": project, "form": form}
    return render(request, "accounts/project_labels.html", context, status=400 if form.errors else 200)
