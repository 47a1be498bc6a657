"""Instance pages: the list and the detail page are live partials (see consumers.py)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.roles import OrgAccess
from apps.accounts.selectors import organization_access_get, ssh_keys_list
from apps.accounts.views.common import add_service_errors
from apps.capacity.selectors.reservations import LaunchableReservation, reservations_launchable_list

from ..forms import LaunchForm
from ..hooks import launch_gate_get
from ..launch_options import FlavorChoice, launch_options_get
from ..models import InstanceRuntime
from ..selectors import instance_events, instance_get, instance_gpus
from ..services.actions import instance_delete, instance_launch, instance_start, instance_stop
from ..services.placement import LaunchUnplaceable
from ..ssh_endpoint import instance_ssh_endpoint
from .instance_list import instance_list_page, list_context  # noqa: F401 - the list lives there (urls, consumers)
from .proxy_auth import notebook_may_open

LIST_PARTIAL = "instances/partials/instance_list.html"
DETAIL_PARTIAL = "instances/partials/instance_detail.html"
RUNNING_COST_PARTIAL = "instances/partials/running_cost.html"


def running_cost_context(access: OrgAccess, instance) -> dict:
    """What the running-cost partial needs; the cost itself comes from billing's template library
    (billing_instances), because billing is above this app and may not be imported here."""
    return {"organization": access.organization, "instance": instance}


def detail_context(access: OrgAccess, instance_id) -> dict:
    instance = instance_get(access=access, instance_id=instance_id)
    runtime = InstanceRuntime.objects.filter(instance=instance).first()
    events = list(instance_events(instance=instance))
    return {
        "access": access,
        "organization": access.organization,
        "instance": instance,
        "runtime": runtime,
        # The same endpoint the API's `ssh` field gives (apps.instances.ssh_endpoint).
        "ssh": instance_ssh_endpoint(instance=instance, runtime=runtime),
        "events": events,
        "gpus": instance_gpus(instance=instance),
        "can_operate": instance.owner_id == access.user_id or access.can_manage_members,
        **running_cost_context(access, instance),
    }


@login_required
def launch_redirect(request):
    """The storefront's Launch button: the launch form of the organization chosen in the switcher."""
    membership = request.current_membership
    if not membership:
        raise Http404("You are not a member of any organization.")
    target = redirect("instances:launch", slug=membership.organization.slug)
    # The flavor, or the offering whose card was clicked (the form then preselects one of its flavors).
    asked = {key: request.GET[key] for key in ("flavor", "offering") if request.GET.get(key)}
    if asked:
        target["Location"] += f"?{urlencode(asked)}"
    return target


def _launch_chosen(options, request, *, has_ssh_keys: bool) -> tuple[FlavorChoice | None, str | None]:
    """The flavor the form is about (posted, asked for in the URL, or the default) and its region:
    the one asked for when it has capacity for that flavor (or the launch may wait), else the
    region with the most free."""
    source = request.POST if request.method == "POST" else request.GET
    chosen = options.flavor(source.get("flavor")) or options.default_flavor(
        has_ssh_keys=has_ssh_keys, offering=source.get("offering")
    )
    if chosen is None:
        return None, None
    asked = chosen.region(source.get("region"))
    if asked is not None and (asked.disabled_reason is None or source.get("queue")):
        return chosen, asked.region.code
    fallback = chosen.best_region or asked or (chosen.regions[0] if chosen.regions else None)
    return chosen, fallback.region.code if fallback else None


def _launch_reservation(reservations: list[LaunchableReservation], request) -> LaunchableReservation | None:
    """The offered reservation the form's values name (a redraw after "Run on" changed), if any."""
    source = request.POST if request.method == "POST" else request.GET
    asked = source.get("reservation", "")
    return next((c for c in reservations if str(c.reservation.pk) == asked), None)


@login_required
def launch_page(request, slug: str):
    """The launch form, once billing says this organization may launch; else, once, what to fix
    and a link to where (apps.instances.hooks.launch_gate_get). Flavor changes re-render the
    choices over htmx (a GET with the form's values), so each region shows that flavor's count."""
    access = organization_access_get(user=request.user, slug=slug)
    context = {"access": access, "organization": access.organization}
    gate = launch_gate_get(organization=access.organization)
    if gate is not None:
        # A POST past the gate (an old tab) gets the same answer; the launch check refuses it anyway.
        status = 400 if request.method == "POST" else 200
        return render(request, "instances/launch.html", {**context, "gate": gate}, status=status)
    options = launch_options_get()
    ssh_keys = list(ssh_keys_list(user=request.user))
    chosen, region_code = _launch_chosen(options, request, has_ssh_keys=bool(ssh_keys))
    reservations = (
        reservations_launchable_list(organization=access.organization, flavor=chosen.flavor) if chosen else []
    )
    on_reservation = _launch_reservation(reservations, request)
    if on_reservation is not None:  # a reservation fixes the region
        region_code = on_reservation.reservation.region.code
    images = [i.pk for i in options.images_for(chosen)]
    asked_image = request.GET.get("image", "")
    asked_keys = {k for k in request.GET.getlist("ssh_keys") if k.isdigit()}
    initial = {
        "flavor": chosen.flavor.pk if chosen else None,
        "region": region_code,
        "reservation": str(on_reservation.reservation.pk) if on_reservation else "",
        # A flavor change (htmx GET with the form's values) keeps the image when it still applies.
        "image": int(asked_image) if asked_image.isdigit() and int(asked_image) in images else next(iter(images), None),
        "name": request.GET.get("name", ""),
        "queue": bool(request.GET.get("queue")),
        # The keys ticked before a flavor change; none ticked and only one key: that one.
        "ssh_keys": [k.pk for k in ssh_keys if str(k.pk) in asked_keys]
        or ([ssh_keys[0].pk] if len(ssh_keys) == 1 else []),
    }
    form = LaunchForm(
        request.POST or None,
        options=options,
        chosen=chosen,
        ssh_keys=ssh_keys,
        reservations=reservations,
        initial=initial,
        refresh_url=request.path,
    )
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                instance = instance_launch(access=access, **form.launch_arguments())
            except LaunchUnplaceable as refused:
                form.add_error("region", refused.message)
            except ValidationError as error:
                add_service_errors(form, error)
            except PermissionDenied as denied:
                form.add_error(None, str(denied))
            else:
                return redirect("instances:detail", slug=slug, instance_id=instance.pk)
        status = 400
    template = "instances/partials/launch_form.html" if request.htmx else "instances/launch.html"
    return render(request, template, {**context, "form": form, "chosen": chosen}, status=status)


@login_required
def instance_detail_page(request, slug: str, instance_id):
    access = organization_access_get(user=request.user, slug=slug)
    return render(request, "instances/instance_detail.html", detail_context(access, instance_id))


@login_required
def instance_running_cost_view(request, slug: str, instance_id):
    """The running cost alone: the detail page polls it every few seconds so the cost ticks
    between the websocket pushes, which come only on changes."""
    access = organization_access_get(user=request.user, slug=slug)
    instance = instance_get(access=access, instance_id=instance_id)
    return render(request, RUNNING_COST_PARTIAL, running_cost_context(access, instance))


def _act(request, slug, instance_id, action, done: str | None):
    access = organization_access_get(user=request.user, slug=slug)
    instance = instance_get(access=access, instance_id=instance_id)
    try:
        action(access=access, instance=instance)
        if done:
            messages.success(request, done)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    except PermissionDenied as denied:
        messages.error(request, str(denied))
    return instance


@login_required
@require_POST
def instance_stop_view(request, slug: str, instance_id):
    # No flash: it would outlive the stop. The live partial says "Stopping…" while it lasts.
    _act(request, slug, instance_id, instance_stop, None)
    if request.POST.get("next") == "list":  # the list's Stop button: back to the list
        return redirect("instances:list", slug=slug)
    return redirect("instances:detail", slug=slug, instance_id=instance_id)


@login_required
@require_POST
def instance_start_view(request, slug: str, instance_id):
    _act(request, slug, instance_id, instance_start, "Starting again.")
    return redirect("instances:detail", slug=slug, instance_id=instance_id)


@login_required
@require_POST
def instance_delete_view(request, slug: str, instance_id):
    instance = _act(request, slug, instance_id, instance_delete, "Deleted.")
    instance.refresh_from_db()
    if instance.state == "terminated":
        return redirect("instances:list", slug=slug)
    return redirect("instances:detail", slug=slug, instance_id=instance_id)


@login_required
def notebook_open(request, slug: str, instance_id):
    """Open: only for someone the proxy will let in, and only once the notebook has a route."""
    access = organization_access_get(user=request.user, slug=slug)
    instance = instance_get(access=access, instance_id=instance_id)
    if not notebook_may_open(user=request.user, instance=instance):
        raise PermissionDenied("This notebook belongs to someone else.")
    runtime = InstanceRuntime.objects.filter(instance=instance).first()
    if instance.state != "running" or runtime is None or not runtime.route_slot:
        messages.error(request, "The notebook is not running.")
        return redirect("instances:detail", slug=slug, instance_id=instance_id)
    return redirect(f"/nb/{runtime.route_slot}/lab")
