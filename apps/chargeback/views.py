"""Chargeback pages of one organization: the report (summary, stacked daily chart, groups with
drill-down, CSV of exactly those rows) and the idle holders. Thin: the query string is read by
selectors.params (the API's parser), figures come from selectors.report / selectors.idle.

Owners, admins and billing members see the whole organization; members and viewers only their
own usage (the parser pins the owner to them, whatever the URL says). Another tenant's slug is a
404 (organization_access_get). A bad parameter is a form error: 400 on a full page, 200 on an
htmx swap (htmx swaps only 2xx answers), never a 500.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import QueryDict
from django.shortcuts import render
from django.urls import reverse

from apps.accounts.roles import OrgAccess
from apps.accounts.selectors import organization_access_get, projects_list
from portal.ui.charts import Series, chart_spec
from portal.ui.money import CURRENCY_SYMBOLS
from portal.ui.tables import table_configure

from .forms import ChargebackForm, IdleForm, ParamsForm
from .selectors.exports import chargeback_csv_response, chargeback_idle_csv, csv_streaming_response
from .selectors.idle import chargeback_idle_holders
from .selectors.names import dimension_names
from .selectors.page import chargeback_credits_applied, chargeback_label_keys, chargeback_rolled_up_at
from .selectors.params import chargeback_idle_query_from_params, chargeback_query_from_params
from .selectors.report import ChargebackQuery, ChargebackReport, chargeback_daily, chargeback_report
from .tables import ChargebackTable, IdleTable

PAGE, PARTIAL = "chargeback/report.html", "chargeback/partials/report.html"
IDLE_PAGE, IDLE_PARTIAL = "chargeback/idle.html", "chargeback/partials/idle.html"
CHART_SERIES = 6  # the biggest groups get a colour each; the rest are one "Other"
PER_PAGE = 50


def _partial_wanted(request) -> bool:
    # htmx swaps the partial in; a history restore (back button, cache gone) needs the full page.
    return bool(request.htmx) and not request.htmx.history_restore_request


def _status(request, valid: bool) -> int:
    return 200 if valid or _partial_wanted(request) else 400


def _params(request, *, default_group: bool) -> QueryDict:
    params = request.GET.copy()
    params.pop("format", None)
    if default_group and "group_by" not in params:
        # The first visit groups by project, the first level of the drill-down.
        params["group_by"] = "project"
    return params


@dataclass(frozen=True)
class Narrowed:
    """One drill-down filter in force, with the link that lifts it."""

    what: str
    name: str
    remove_url: str


def _narrowed(request, access: OrgAccess, params: QueryDict, report: ChargebackReport) -> list[Narrowed]:
    """The drill-down filters in force, by name. Names come from this organization only: a
    project by its slug among the organization's projects, a user or an instance only when the
    (organization-scoped) report has rows for it; else the id as given."""
    query = report.query
    found = bool(report.rows)
    out = []
    for param, what in (("project", "Project"), ("owner", "User"), ("instance", "Instance")):
        value = params.get(param)
        if not value:
            continue
        if param == "project":
            name = (
                projects_list(organization=access.organization)
                .filter(pk=query.project_id)
                .values_list("name", flat=True)
                .first()
                or value
            )
        elif param == "owner" and not access.can_view_billing:
            continue  # a member's own usage: the page says so already
        elif found:
            dimension = "owner" if param == "owner" else "instance"
            key = str(query.owner_id if param == "owner" else query.instance_id)
            name = dimension_names(dimension, [key])[key]
        else:
            name = value
        rest = params.copy()
        rest.pop(param, None)
        out.append(Narrowed(what=what, name=name, remove_url=f"?{rest.urlencode()}"))
    return out


def _chart(query: ChargebackQuery) -> dict:
    daily = chargeback_daily(query=query, top=CHART_SERIES)
    series = [Series(s.name, s.cost) for s in daily.series if any(s.cost)]
    return chart_spec(
        kind="bar",
        labels=[f"{d:%b} {d.day}" for d in daily.days],
        series=series,
        unit=CURRENCY_SYMBOLS.get(daily.currency.upper(), daily.currency.upper()),
        stacked=True,
    )


def _report_context(request, access: OrgAccess) -> tuple[dict, bool]:
    own_only = not access.can_view_billing
    params = _params(request, default_group=True)
    context = {
        "access": access,
        "organization": access.organization,
        "own_only": own_only,
        "rolled_up_at": chargeback_rolled_up_at(),
    }
    label_keys = chargeback_label_keys(access=access, own_only=own_only)
    try:
        query = chargeback_query_from_params(organization=access.organization, access=access, params=params)
    except ValidationError as error:
        form = ChargebackForm(params, label_keys=label_keys)
        form.errors_add(error)
        return {**context, "form": form, "report": None}, False
    form = ChargebackForm(params, label_keys=label_keys, defaults=ParamsForm.range_defaults(query))
    report = chargeback_report(query=query)
    slugs = dict(projects_list(organization=access.organization).values_list("pk", "slug"))
    table = ChargebackTable.for_report(report, base=form.data, project_slugs=slugs, own_only=own_only)
    table_configure(table, params=request.GET, per_page=PER_PAGE)
    csv_params = form.data.copy()
    for name in ("page", "sort"):
        csv_params.pop(name, None)
    context.update(
        form=form,
        report=report,
        table=table,
        chart=_chart(query),
        credits=chargeback_credits_applied(access=access, start=query.start, end=query.end),
        narrowed=_narrowed(request, access, form.data, report),
        last_day=query.end.fromordinal(query.end.toordinal() - 1),
        csv_url=f"{reverse('chargeback-csv', args=[access.organization.slug])}?{csv_params.urlencode()}",
        # FOCUS is per billing period: the month the range starts in (owners, admins, billing).
        focus_url=(
            f"{reverse('chargeback-focus-csv', args=[access.organization.slug])}?month={query.start:%Y-%m}"
            if access.can_view_billing else None
        ),
    )
    if context["credits"] is not None:
        context["net"] = report.total.cost - context["credits"]
    return context, True


@login_required
def chargeback_page(request, slug: str):
    access = organization_access_get(user=request.user, slug=slug)
    if request.GET.get("format") == "csv":
        return chargeback_csv(request, slug)
    context, valid = _report_context(request, access)
    template = PARTIAL if _partial_wanted(request) else PAGE
    return render(request, template, context, status=_status(request, valid))


@login_required
def chargeback_csv(request, slug: str):
    """The rows and total the page shows for the same query string (its grouping, range,
    labels and drill-down), every row rather than one page of them."""
    access = organization_access_get(user=request.user, slug=slug)
    params = _params(request, default_group=True)
    try:
        query = chargeback_query_from_params(organization=access.organization, access=access, params=params)
    except ValidationError as error:
        form = ChargebackForm(params)
        form.errors_add(error)
        context = {
            "access": access,
            "organization": access.organization,
            "form": form,
            "report": None,
            "own_only": not access.can_view_billing,
        }
        return render(request, PAGE, context, status=400)
    report = chargeback_report(query=query)
    return chargeback_csv_response(report=report, organization_slug=access.organization.slug)


@login_required
def idle_page(request, slug: str):
    access = organization_access_get(user=request.user, slug=slug)
    own_only = not access.can_view_billing
    params = request.GET.copy()
    context = {"access": access, "organization": access.organization, "own_only": own_only}
    try:
        idle = chargeback_idle_query_from_params(organization=access.organization, access=access, params=params)
    except ValidationError as error:
        form = IdleForm(params)
        form.errors_add(error)
        context.update(form=form, holders=None)
        template = IDLE_PARTIAL if _partial_wanted(request) else IDLE_PAGE
        return render(request, template, context, status=_status(request, False))
    holders = chargeback_idle_holders(
        organization_id=idle.organization_id,
        start=idle.start,
        end=idle.end,
        below_pct=idle.below_pct,
        min_hours=idle.min_hours,
        owner_id=idle.owner_id,
    )
    if params.get("format") == "csv":
        filename = f"{access.organization.slug}-idle-holders-{idle.start}.csv"
        return csv_streaming_response(lines=chargeback_idle_csv(holders=holders), filename=filename)
    defaults = {
        "start": idle.start.isoformat(),
        "end": idle.end.fromordinal(idle.end.toordinal() - 1).isoformat(),
        "below_pct": f"{idle.below_pct:f}",
        "min_hours": f"{idle.min_hours:f}",
    }
    form = IdleForm(params, defaults=defaults)
    table = table_configure(IdleTable(holders, slug=access.organization.slug), params=request.GET, per_page=PER_PAGE)
    csv_params = form.data.copy()
    csv_params["format"] = "csv"
    for name in ("page", "sort"):
        csv_params.pop(name, None)
    context.update(
        form=form,
        holders=holders,
        table=table,
        wasted_cost=sum((h.cost for h in holders), Decimal(0)),
        currency=holders[0].currency if holders else "USD",
        csv_url=f"?{csv_params.urlencode()}",
    )
    template = IDLE_PARTIAL if _partial_wanted(request) else IDLE_PAGE
    return render(request, template, context)
