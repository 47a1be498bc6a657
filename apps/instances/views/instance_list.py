"""The instance list page. Its partial is live: the socket (consumers.InstanceListConsumer)
renders it with the same `list_context` and the page's own query (filters, sort, page), which
travels in the socket's address."""

from __future__ import annotations

from collections.abc import Mapping

from django.contrib.auth.decorators import login_required
from django.http import QueryDict
from django.shortcuts import render

from apps.accounts.roles import OrgAccess
from apps.accounts.selectors import organization_access_get
from portal.ui.tables import table_configure

from ..filters import InstanceFilter
from ..hooks import instance_costs_get
from ..selectors import instances_list
from ..tables import InstanceTable


def list_context(access: OrgAccess, params: QueryDict | Mapping | None = None) -> dict:
    """The filtered, sorted page of instances, each row with its cost so far: the rows, their
    count and their costs are three queries, whatever the number of rows."""
    params = params if params is not None else QueryDict()
    filterset = InstanceFilter(params or None, queryset=instances_list(access=access))
    table = table_configure(InstanceTable(filterset.qs, access=access), params=params)
    # Billing is above this app: it prices the page's rows through the hook, in one query.
    table.costs = instance_costs_get(instance_ids=[row.record.pk for row in table.page.object_list])
    filters_active = any(params.get(name) for name in filterset.filters)
    return {
        "access": access,
        "organization": access.organization,
        "table": table,
        "filterset": filterset,
        "filters_active": filters_active,
        "is_empty": not filters_active and table.paginator.count == 0,
    }


@login_required
def instance_list_page(request, slug: str):
    access = organization_access_get(user=request.user, slug=slug)
    context = list_context(access, request.GET)
    # The socket renders the same partial with the page's query: filters, sort and page.
    context["ws_query"] = request.GET.urlencode()
    return render(request, "instances/instance_list.html", context)
