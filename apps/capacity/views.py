"""Operators' pages under /ops/: inventory by region, one node, node actions, registration tokens.

Staff only. Anyone else who is signed in gets 404, as for a page that does not exist: the
inventory of the cloud is not for customers, not even its existence. The overview and the node
page are live partials (see portal.live): the consumers render the same partial with the same
context function as these views.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import wraps
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, QueryDict
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from portal.ui.tables import table_configure

from .filters import NodeFilter
from .forms import NodeActionForm, RegistrationTokenCreateForm
from .models import Node, NodeState
from .selectors.inventory import (
    node_detail_get,
    node_get,
    nodes_list,
    regions_inventory_list,
    registration_tokens_list,
)
from .services.nodes import (
    ALLOWED_TRANSITIONS,
    node_cordon,
    node_drain,
    node_maintenance,
    node_uncordon,
    registration_token_create,
)
from .tables import NodeTable, RegistrationTokenTable

INVENTORY_PARTIAL = "capacity/partials/inventory.html"
NODE_PARTIAL = "capacity/partials/node.html"
# The overview is re-rendered for every open socket on every push: one page of nodes at a time.
NODES_PER_PAGE = 50


def is_operator(user) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


def staff_required(view: Callable) -> Callable:
    """Login first (anonymous → login page), then staff or 404."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not is_operator(request.user):
            raise Http404("No such page.")
        return view(request, *args, **kwargs)

    return login_required(wrapper)


# --- node actions ------------------------------------------------------------------------------


# action → (service, resulting state, button label). The services enforce the transitions.
NODE_ACTIONS: dict[str, tuple[Callable, str, str]] = {
    "cordon": (node_cordon, NodeState.CORDONED, "Cordon"),
    "drain": (node_drain, NodeState.DRAINING, "Drain"),
    "uncordon": (node_uncordon, NodeState.READY, "Uncordon"),
    "maintenance": (node_maintenance, NodeState.MAINTENANCE, "Maintenance"),
}


def node_actions_available(*, node: Node) -> list[tuple[str, str]]:
    """(action, label) pairs the node's current state allows, for the buttons."""
    allowed = ALLOWED_TRANSITIONS.get(node.state, set())
    return [(action, label) for action, (_, to_state, label) in NODE_ACTIONS.items() if to_state in allowed]


# --- context functions (shared with the consumers) ---------------------------------------------


def inventory_context(*, params: QueryDict | Mapping | None = None) -> dict:
    """Everything the inventory partial needs; the view and the websocket consumer both use it,
    the socket with the page's query (filters, sort, page). Regions: one query; nodes: the page
    and its count."""
    params = params if params is not None else QueryDict()
    filterset = NodeFilter(params or None, queryset=nodes_list())
    filters_active = any(params.get(name) for name in filterset.filters)
    nodes = table_configure(NodeTable(filterset.qs, filtered=filters_active), params=params, per_page=NODES_PER_PAGE)
    return {
        "regions": regions_inventory_list(),
        "nodes": nodes,
        "filterset": filterset,
        "filters_active": filters_active,
        "filter_region": filterset.form.cleaned_data.get("region") if filterset.is_valid() else None,
    }


def node_context(*, node_id: UUID) -> dict:
    """Everything the node partial needs; the page and the socket (portal/live.py) both use it."""
    detail = node_detail_get(node_id=node_id)
    return {"detail": detail, "node": detail.node, "actions": node_actions_available(node=detail.node)}


# --- pages -------------------------------------------------------------------------------------


@staff_required
def inventory_page(request):
    context = inventory_context(params=request.GET)
    if request.htmx:
        return render(request, INVENTORY_PARTIAL, context)
    context.update(ws_query=request.GET.urlencode())
    return render(request, "capacity/inventory.html", context)


@staff_required
def node_page(request, node_id: UUID):
    context = node_context(node_id=node_id)
    if request.htmx:
        return render(request, NODE_PARTIAL, context)
    return render(request, "capacity/node_detail.html", context)


@staff_required
@require_POST
def node_action_view(request, node_id: UUID, action: str):
    if action not in NODE_ACTIONS:
        raise Http404("No such action.")
    service, _, label = NODE_ACTIONS[action]
    node = node_get(node_id=node_id)
    form = NodeActionForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    kwargs = {"reason": reason} if reason else {}
    try:
        changed = service(node=node, actor=request.user, **kwargs)
    except ValidationError as error:
        messages.error(request, f"{label} refused: {' '.join(error.messages)}")
    else:
        if changed is None:
            # The compare-and-set lost: an agent, the liveness check or another operator moved it.
            messages.error(request, f"{node.hostname} changed state meanwhile; look again and retry.")
        else:
            messages.success(request, f"{changed.hostname} is now {changed.get_state_display().lower()}.")
    return redirect("capacity:node-detail", node_id=node_id)


@staff_required
def registration_tokens_page(request):
    form = RegistrationTokenCreateForm(request.POST or None)
    new_token = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                record, new_token = registration_token_create(
                    region=form.cleaned_data["region"], actor=request.user,
                    note=form.cleaned_data["note"], ttl_hours=form.cleaned_data["ttl_hours"],
                )
            except ValidationError as error:
                _add_service_errors(form, error)
                status = 400
            else:
                new_token = {"record": record, "token": new_token}
                form = RegistrationTokenCreateForm()
        else:
            status = 400
    context = {
        "form": form,
        "tokens_table": table_configure(RegistrationTokenTable(registration_tokens_list()), params=request.GET),
        "new_token": new_token,
        # The agent calls the portal's public address, not whatever host this page was asked on.
        "portal_base_url": settings.PORTAL_BASE_URL.rstrip("/"),
    }
    # Shown once and never again: nothing that could be replayed (a cache, history) keeps it.
    response = render(request, "capacity/registration_tokens.html", context, status=status)
    if new_token:
        response["Cache-Control"] = "no-store"
    return response


def _add_service_errors(form, error: ValidationError) -> None:
    if hasattr(error, "error_dict"):
        for field, field_messages in error.message_dict.items():
            form.add_error(field if field in form.fields else None, field_messages)
    else:
        form.add_error(None, error.messages)
