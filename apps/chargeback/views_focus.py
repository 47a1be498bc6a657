"""The FOCUS CSV download of the chargeback pages: /orgs/<slug>/chargeback/focus.csv?month=YYYY-MM.
Owners, admins and billing members only (403 for other roles, 404 for another tenant); a missing
or bad month is a 400 that says what to give."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse, HttpResponseBadRequest

from apps.accounts.selectors import organization_access_get

from .exports_focus import focus_csv, focus_csv_filename
from .selectors.focus import focus_month_parse, focus_rows


@login_required
def focus_csv_download(request, slug: str):
    access = organization_access_get(user=request.user, slug=slug)
    if not access.can_view_billing:
        raise PermissionDenied("Only owners, admins and billing members export FOCUS cost data.")
    try:
        month = focus_month_parse(request.GET.get("month"))
    except ValidationError as exc:
        return HttpResponseBadRequest(" ".join(exc.messages), content_type="text/plain; charset=utf-8")
    rows = focus_rows(organization_id=access.organization.pk, month=month)
    response = HttpResponse(focus_csv(rows=rows), content_type="text/csv; charset=utf-8")
    name = focus_csv_filename(organization_slug=access.organization.slug, month_text=f"{month:%Y-%m}")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
