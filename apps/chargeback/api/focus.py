"""GET /api/v1/organizations/{slug}/chargeback/focus/?month=YYYY-MM: one month of the
organization as FinOps FOCUS 1.2 rows (apps.chargeback.selectors.focus), as JSON pages
(limit/offset, a stable order) or, with ?format=csv (or Accept: text/csv), the whole month as the
FOCUS CSV file. A finance tool pages through a year one month at a time.

Owners, admins and billing members (and API keys of those roles) only: the rows are the
organization's invoices. Others get 403; another tenant's slug is 404; a bad month is a 400."""

from __future__ import annotations

import json

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import GenericAPIView
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response

from apps.accounts.api.access import OrganizationScopedMixin

from ..exports_focus import focus_csv, focus_csv_filename
from ..selectors.focus import FOCUS_VERSION, focus_is_invoiced, focus_month_parse, focus_rows


class FocusCsvRenderer(BaseRenderer):
    """Lets ?format=csv / Accept: text/csv through content negotiation; the view answers the CSV
    itself (and errors as JSON), so this renders only what reaches it otherwise."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return json.dumps(data, default=str).encode()


class FocusExportView(OrganizationScopedMixin, GenericAPIView):
    renderer_classes = [JSONRenderer, FocusCsvRenderer]

    def finalize_response(self, request, response, *args, **kwargs):
        # An error asked for as CSV is still JSON: a reason a person or a tool can read.
        renderer = getattr(request, "accepted_renderer", None)
        if isinstance(response, Response) and response.status_code >= 400 and getattr(renderer, "format", "") == "csv":
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), "application/json"
        return super().finalize_response(request, response, *args, **kwargs)

    @extend_schema(
        operation_id="chargeback_focus",
        parameters=[
            OpenApiParameter("month", OpenApiTypes.STR, required=True, description="YYYY-MM (UTC calendar month)."),
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"], description="csv: the FOCUS CSV."),
            OpenApiParameter("limit", OpenApiTypes.INT, description="Rows per page, 1 or more (capped at 200)."),
            OpenApiParameter("offset", OpenApiTypes.INT, description="Index of the first row, 0 or more."),
        ],
        responses={
            (200, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="{count, next, previous, results: [FOCUS row], month, focus_version, invoiced}",
            ),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The month's FOCUS CSV."),
        },
    )
    def get(self, request, org_slug: str):
        access = self.access
        if not access.can_view_billing:
            raise PermissionDenied("Only owners, admins and billing members export FOCUS cost data.")
        month = focus_month_parse(request.query_params.get("month"))
        organization_id = access.organization.pk
        rows = focus_rows(organization_id=organization_id, month=month)
        if request.accepted_renderer.format == "csv":
            response = HttpResponse(focus_csv(rows=rows), content_type="text/csv; charset=utf-8")
            name = focus_csv_filename(organization_slug=access.organization.slug, month_text=f"{month:%Y-%m}")
            response["Content-Disposition"] = f'attachment; filename="{name}"'
            return response
        page = self.paginate_queryset(rows)
        response = self.get_paginated_response(page)
        response.data["month"] = f"{month:%Y-%m}"
        response.data["focus_version"] = FOCUS_VERSION
        response.data["invoiced"] = focus_is_invoiced(organization_id=organization_id, month=month)
        return response
