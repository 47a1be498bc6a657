"""REST API v1 for chargeback, under /api/v1/organizations/{slug}/chargeback/: grouped rows
(paginated, with the range's total on every page), the per-day series and the idle holders, each
also as CSV with ?format=csv (or Accept: text/csv).

Scoped like the pages: another tenant's slug is 404; owners, admins and billing members (and API
keys of those roles) see the whole organization, members and viewers (and their keys) only their
own usage. Parameters are read by apps.chargeback.selectors.params, which the pages share: a bad
one is a 400 naming the parameter, never a 500.

Rows come in a stable order (cost, then names, then ids), so limit/offset pages walk a finished
range exactly once. Every page repeats the total of the whole range.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta

from django.core.exceptions import ValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings

from apps.accounts.api.access import OrganizationScopedMixin

from ..selectors.exports import (
    chargeback_csv_response,
    chargeback_daily_csv,
    chargeback_idle_csv,
    csv_streaming_response,
)
from ..selectors.idle import chargeback_idle_holders
from ..selectors.params import chargeback_idle_query_from_params, chargeback_query_from_params
from ..selectors.report import DIMENSIONS, chargeback_daily, chargeback_report
from .serializers import DailySerializer, IdlePageSerializer, ReportPageSerializer, RowSerializer, SeriesSerializer


class CsvRenderer(BaseRenderer):
    """Lets content negotiation accept ?format=csv / Accept: text/csv; the views answer CSV
    themselves (streamed), so this renders only what reaches it otherwise."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return str(data).encode()


_RANGE_PARAMETERS = [
    OpenApiParameter("start", OpenApiTypes.DATE, description="First UTC day (default: this month's first)."),
    OpenApiParameter(
        "end", OpenApiTypes.DATE, description="Last UTC day, INCLUSIVE (default: today). At most 366 days."
    ),
    OpenApiParameter("month", OpenApiTypes.STR, description="YYYY-MM: the whole month (instead of start/end)."),
]
_FORMAT = OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"], description="csv: a CSV download.")
_FILTER_PARAMETERS = [
    OpenApiParameter(
        "group_by", OpenApiTypes.STR, description=f"Up to two of {', '.join(DIMENSIONS)}, label:<key>; comma-separated."
    ),
    OpenApiParameter(
        "label", OpenApiTypes.STR, many=True, description="key=value filter on effective labels; repeat to AND."
    ),
    OpenApiParameter("project", OpenApiTypes.STR, description="Only this project (its slug)."),
    OpenApiParameter("instance", OpenApiTypes.UUID, description="Only this instance."),
    OpenApiParameter("owner", OpenApiTypes.INT, description="Only this user's usage (members: always their own)."),
]
_PAGE_PARAMETERS = [
    OpenApiParameter("limit", OpenApiTypes.INT, description="Rows per page, 1 or more (capped at 200)."),
    OpenApiParameter("offset", OpenApiTypes.INT, description="Index of the first row, 0 or more."),
]


def _csv_or(serializer) -> dict:
    return {
        (200, "application/json"): serializer,
        (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The same rows as CSV, then a TOTAL line."),
    }


class _ChargebackView(OrganizationScopedMixin, GenericAPIView):
    renderer_classes = [*api_settings.DEFAULT_RENDERER_CLASSES, CsvRenderer]

    def wants_csv(self) -> bool:
        # Not set when negotiation itself failed (an unknown ?format=): that answer is JSON.
        return getattr(getattr(self.request, "accepted_renderer", None), "format", None) == "csv"

    def finalize_response(self, request, response, *args, **kwargs):
        # An error asked for as CSV is still JSON: a reason a person or a tool can read.
        if isinstance(response, Response) and response.status_code >= 400 and self.wants_csv():
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), "application/json"
        return super().finalize_response(request, response, *args, **kwargs)

    def page(self, items: list) -> tuple[list, dict]:
        paginator = self.paginator
        results = paginator.paginate_queryset(items, self.request, view=self)
        return results, {
            "count": paginator.count,
            "next": paginator.get_next_link(),
            "previous": paginator.get_previous_link(),
        }


class ChargebackReportView(_ChargebackView):
    @extend_schema(
        summary="Usage and cost grouped by up to two dimensions",
        parameters=[*_RANGE_PARAMETERS, *_FILTER_PARAMETERS, *_PAGE_PARAMETERS, _FORMAT],
        responses=_csv_or(ReportPageSerializer),
    )
    def get(self, request, org_slug):
        access = self.access
        query = chargeback_query_from_params(
            organization=access.organization, access=access, params=request.query_params
        )
        report = chargeback_report(query=query)
        if self.wants_csv():
            return chargeback_csv_response(report=report, organization_slug=access.organization.slug)
        rows, links = self.page(report.rows)
        return Response(
            {
                "start": query.start,
                "end": query.end - timedelta(days=1),
                "currency": report.currency,
                "group_by": list(query.group_by),
                "labels": dict(query.labels),
                "total": RowSerializer(report.total).data,
                **links,
                "results": RowSerializer(rows, many=True).data,
            }
        )


class ChargebackDailyView(_ChargebackView):
    pagination_class = None

    @extend_schema(
        summary="Cost and GPU-hours per UTC day, per value of the first group dimension",
        parameters=[
            *_RANGE_PARAMETERS,
            *_FILTER_PARAMETERS,
            OpenApiParameter(
                "top", OpenApiTypes.INT, description="Keep the biggest N series, fold the rest into Other."
            ),
            _FORMAT,
        ],
        responses={
            (200, "application/json"): DailySerializer,
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="A line per day and series."),
        },
    )
    def get(self, request, org_slug):
        access = self.access
        query = chargeback_query_from_params(
            organization=access.organization, access=access, params=request.query_params
        )
        top = _top(request.query_params.get("top"))
        daily = chargeback_daily(query=query, top=top)
        if self.wants_csv():
            last = query.end - timedelta(days=1)
            return csv_streaming_response(
                lines=chargeback_daily_csv(daily=daily),
                filename=f"{access.organization.slug}-chargeback-daily-{query.start}-to-{last}.csv",
            )
        return Response(
            {
                "start": query.start,
                "end": query.end - timedelta(days=1),
                "currency": daily.currency,
                "group_by": list(query.group_by[:1]),
                "days": daily.days,
                "series": SeriesSerializer(daily.series, many=True).data,
            }
        )


def _top(text: str | None) -> int | None:
    if text in (None, ""):
        return None
    if not text.isdigit() or len(text) > 4 or not 1 <= int(text) <= 1000:
        raise ValidationError({"top": [f"“{text[:40]}” is not a whole number from 1 to 1000."]})
    return int(text)


class ChargebackIdleView(_ChargebackView):
    @extend_schema(
        summary="Idle holders: instances that held GPUs long at low utilisation, most wasted first",
        parameters=[
            *_RANGE_PARAMETERS,
            OpenApiParameter("below_pct", OpenApiTypes.NUMBER, description="Utilisation below this % (default 10)."),
            OpenApiParameter(
                "min_hours", OpenApiTypes.NUMBER, description="At least this many GPU-hours held (default 24)."
            ),
            *_PAGE_PARAMETERS,
            _FORMAT,
        ],
        responses=_csv_or(IdlePageSerializer),
    )
    def get(self, request, org_slug):
        access = self.access
        idle = chargeback_idle_query_from_params(
            organization=access.organization, access=access, params=request.query_params
        )
        holders = chargeback_idle_holders(**asdict(idle))
        last = idle.end - timedelta(days=1)
        if self.wants_csv():
            return csv_streaming_response(
                lines=chargeback_idle_csv(holders=holders),
                filename=f"{access.organization.slug}-idle-holders-{idle.start}-to-{last}.csv",
            )
        rows, links = self.page(holders)
        body = {"start": idle.start, "end": last, "below_pct": idle.below_pct, "min_hours": idle.min_hours, **links}
        body["results"] = rows
        return Response(IdlePageSerializer(body).data)
