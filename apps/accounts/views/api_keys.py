from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from portal.ui.tables import table_configure

from ..forms import ApiKeyCreateForm
from ..selectors import api_key_get, api_keys_list
from ..services import api_key_create, api_key_revoke
from ..tables import ApiKeyTable
from .common import access_for, add_service_errors


@login_required
def api_keys_page(request, slug: str):
    access = access_for(request, slug)
    if not access.can_manage_api_keys:
        raise PermissionDenied("Only owners and admins manage API keys.")
    form = ApiKeyCreateForm(request.POST or None)
    new_token = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            days = form.cleaned_data["expires_in_days"]
            try:
                _, new_token = api_key_create(
                    access=access,
                    name=form.cleaned_data["name"],
                    role=form.cleaned_data["role"],
                    expires_at=timezone.now() + timedelta(days=days) if days else None,
                )
                form = ApiKeyCreateForm()
            except ValidationError as error:
                add_service_errors(form, error)
                status = 400
        else:
            status = 400
    return render(
        request,
        "accounts/api_keys.html",
        {
            "access": access,
            "organization": access.organization,
            "form": form,
            "api_keys_table": table_configure(
                ApiKeyTable(api_keys_list(organization=access.organization), organization=access.organization,
                            csrf_token=get_token(request)),
                params=request.GET,
            ),
            "new_token": new_token,
        },
        status=status,
    )


@login_required
@require_POST
def api_key_revoke_view(request, slug: str, api_key_id: int):
    access = access_for(request, slug)
    api_key = api_key_get(organization=access.organization, api_key_id=api_key_id)
    api_key_revoke(access=access, api_key=api_key)
    messages.success(request, f"Key {api_key.name} revoked. Requests with it now get 401.")
    return redirect("accounts:api-keys", slug=slug)
