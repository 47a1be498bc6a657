"""The capacity calendar: a customer's reservations of their organization (book, cancel), and the
operators' view of every tenant's, per region and GPU model, against the fleet's capacity.

Thin: the form parses, services.reservations books and cancels (its refusal is the form's error),
selectors read. Each page reads a fixed number of queries, however many reservations it shows.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import QueryDict
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.accounts.roles import OrgAccess
from apps.accounts.selectors import organization_access_get
from apps.accounts.views.common import add_service_errors
from portal.ui.tables import table_configure

from .calendar import calendar_range, gantt_spec, pools_load
from .forms_reservations import ReservationForm
from .selectors.reservations import fleet_capacity_map, reservation_get, reservations_all_list, reservations_list
from .services.reservations import reservation_cancel, reservation_request
from .tables_reservations import OperatorReservationTable, ReservationTable
from .views import staff_required

PAST_SHOWN = timedelta(days=1)  # the calendar starts a day back, so what just ended still shows
AHEAD_SHOWN = timedelta(days=14)
OPS_AHEAD_SHOWN = timedelta(days=30)


RESERVATIONS_PARTIAL = "capacity/partials/reservations.html"


def reservations_context(*, access: OrgAccess, params: QueryDict | None = None) -> dict:
    """What the calendar partial shows; the page and its socket (consumers_reservations) both use
    it. Two queries: the organization's reservations with their joins, and nothing per row. `now`
    is taken to the minute, so the partial's version moves once a minute, not on every render."""
    now = timezone.now().replace(second=0, microsecond=0)
    rows = list(reservations_list(organization=access.organization))
    shown = [r for r in rows if r.ends_at > now - PAST_SHOWN and r.starts_at < now + AHEAD_SHOWN]
    since, until = calendar_range(reservations=shown, now=now, ahead=AHEAD_SHOWN)
    slug = access.organization.slug
    table = ReservationTable(rows, slug=slug, can_cancel=access.can_launch)
    return {
        "organization": access.organization,
        "access": access,
        "table": table_configure(table, params=params),
        "gantt": gantt_spec(reservations=shown, since=since, until=until, now=now),
        "has_bars": bool(shown),
    }


@login_required
def reservations_page(request, slug: str):
    access = organization_access_get(user=request.user, slug=slug)
    form = ReservationForm(request.POST or None)
    if request.method == "POST":
        if not access.can_launch:
            raise PermissionDenied("Your role cannot reserve capacity; ask an owner or admin.")
        if form.is_valid():
            try:
                reservation = reservation_request(access=access, **form.request())
            except ValidationError as refused:
                add_service_errors(form, refused)
            else:
                messages.success(request, f"Reserved {reservation.what} in {reservation.region.code}.")
                return redirect("capacity-reservations:list", slug=slug)
    context = reservations_context(access=access, params=request.GET)
    if request.htmx:
        return render(request, RESERVATIONS_PARTIAL, context)
    context.update(form=form, ws_query=request.GET.urlencode())
    return render(request, "capacity/reservations.html", context, status=400 if request.method == "POST" else 200)


@login_required
@require_POST
def reservation_cancel_view(request, slug: str, reservation_id: UUID):
    access = organization_access_get(user=request.user, slug=slug)
    reservation = reservation_get(organization=access.organization, reservation_id=reservation_id)
    try:
        reservation_cancel(access=access, reservation_id=reservation.pk)
    except ValidationError as refused:
        messages.error(request, " ".join(refused.messages))
    else:
        messages.success(request, f"Cancelled the reservation of {reservation.what}.")
    return redirect("capacity-reservations:list", slug=slug)


@staff_required
def ops_reservations_page(request):
    now = timezone.now()
    rows = list(reservations_all_list(since=now - PAST_SHOWN, until=now + OPS_AHEAD_SHOWN))
    since, until = calendar_range(reservations=rows, now=now, ahead=OPS_AHEAD_SHOWN)
    return render(
        request,
        "capacity/ops_reservations.html",
        {
            "pools": pools_load(reservations=rows, fleets=fleet_capacity_map(), since=since, until=until, now=now),
            "table": table_configure(OperatorReservationTable(rows), params=request.GET),
            "ahead_days": OPS_AHEAD_SHOWN.days,
        },
    )
