from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from portal.ui.tables import table_configure

from ..forms import OrganizationCreateForm, ProjectCreateForm
from ..middleware import SESSION_KEY
from ..selectors import memberships_for_user, organization_access_get, projects_list
from ..services import organization_create, personal_organization_ensure, project_create
from ..tables import OrganizationTable
from .common import access_for, add_service_errors
from .members import members_context


@login_required
def dashboard(request):
    membership = request.current_membership
    if not membership:
        personal_organization_ensure(user=request.user)
        return redirect("accounts:dashboard")
    return redirect("accounts:organization-detail", slug=membership.organization.slug)


@login_required
def organization_list(request):
    form = OrganizationCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            organization = organization_create(user=request.user, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            request.session[SESSION_KEY] = organization.slug
            messages.success(request, f"Created {organization.name}. You are its owner.")
            return redirect("accounts:organization-detail", slug=organization.slug)
    return render(
        request,
        "accounts/organization_list.html",
        {
            "organizations_table": table_configure(
                OrganizationTable(memberships_for_user(user=request.user)), params=request.GET
            ),
            "form": form,
        },
        status=400 if form.errors else 200,
    )


@login_required
def organization_detail(request, slug: str):
    access = access_for(request, slug)
    request.session[SESSION_KEY] = slug
    context = {
        **members_context(access),
        "projects": projects_list(organization=access.organization),
        "project_form": ProjectCreateForm(),
    }
    return render(request, "accounts/organization_detail.html", context)


@login_required
@require_POST
def organization_switch(request):
    slug = request.POST.get("slug", "")
    organization_access_get(user=request.user, slug=slug)  # 404 unless a member
    request.session[SESSION_KEY] = slug
    return redirect("accounts:organization-detail", slug=slug)


@login_required
@require_POST
def project_create_view(request, slug: str):
    access = access_for(request, slug)
    form = ProjectCreateForm(request.POST)
    if form.is_valid():
        try:
            project = project_create(access=access, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, f"Project {project.name} created.")
            return redirect("accounts:organization-detail", slug=slug)
    # The page again with what was typed and an error under each bad field (or label pair).
    context = {
        **members_context(access),
        "projects": projects_list(organization=access.organization),
        "project_form": form,
    }
    return render(request, "accounts/organization_detail.html", context, status=400)
