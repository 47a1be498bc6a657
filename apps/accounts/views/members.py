"""Members and invitations of one organization. The member list is a live partial."""

from collections.abc import Mapping

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import QueryDict
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from portal.ui.tables import table_configure

from ..forms import InvitationCreateForm, MembershipRoleForm
from ..models import Role
from ..roles import OrgAccess
from ..selectors import (
    invitation_get,
    invitation_get_by_token,
    invitations_pending_list,
    members_list,
    membership_get,
)
from ..services import (
    invitation_accept,
    invitation_create,
    invitation_revoke,
    membership_remove,
    membership_role_change,
)
from ..tables import MemberTable
from .common import access_for, add_service_errors

MEMBERS_PARTIAL = "accounts/partials/members.html"
# A team fits on one page; a course's roster pages.
MEMBERS_PER_PAGE = 50


def members_context(
    access: OrgAccess, invite_form: InvitationCreateForm | None = None, params: QueryDict | Mapping | None = None
) -> dict:
    """Everything the members partial needs; the view and the websocket consumer both use it,
    the socket with the page's query (the table's sort and page)."""
    members = members_list(organization=access.organization)
    return {
        "access": access,
        "organization": access.organization,
        "members": members,
        "members_table": table_configure(MemberTable(members, access=access), params=params, per_page=MEMBERS_PER_PAGE),
        "invitations": invitations_pending_list(organization=access.organization),
        "invite_form": invite_form or InvitationCreateForm(),
        "roles": Role.choices,
    }


@login_required
def members_page(request, slug: str):
    access = access_for(request, slug)
    form = InvitationCreateForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                invitation = invitation_create(access=access, **form.cleaned_data)
            except ValidationError as error:
                add_service_errors(form, error)
            else:
                messages.success(request, f"Invitation sent to {invitation.email}.")
                return redirect("accounts:members", slug=slug)
        status = 400
    context = members_context(access, invite_form=form, params=request.GET)
    context["ws_query"] = request.GET.urlencode()
    template = MEMBERS_PARTIAL if request.htmx else "accounts/members.html"
    return render(request, template, context, status=status)


@login_required
@require_POST
def membership_role_view(request, slug: str, membership_id: int):
    access = access_for(request, slug)
    membership = membership_get(organization=access.organization, membership_id=membership_id)
    form = MembershipRoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a valid role.")
    else:
        try:
            membership_role_change(access=access, membership=membership, role=form.cleaned_data["role"])
            messages.success(request, f"{membership.user.email} is now {membership.role}.")
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
    return redirect("accounts:members", slug=slug)


@login_required
@require_POST
def membership_remove_view(request, slug: str, membership_id: int):
    access = access_for(request, slug)
    membership = membership_get(organization=access.organization, membership_id=membership_id)
    try:
        membership_remove(access=access, membership=membership)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("accounts:members", slug=slug)
    if membership.user_id == request.user.pk:
        messages.success(request, f"You left {access.organization.name}.")
        return redirect("accounts:dashboard")
    messages.success(request, f"Removed {membership.user.email}.")
    return redirect("accounts:members", slug=slug)


@login_required
@require_POST
def invitation_revoke_view(request, slug: str, invitation_id: int):
    access = access_for(request, slug)
    invitation = invitation_get(organization=access.organization, invitation_id=invitation_id)
    try:
        invitation_revoke(access=access, invitation=invitation)
        messages.success(request, f"Invitation to {invitation.email} withdrawn.")
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    return redirect("accounts:members", slug=slug)


def invitation_accept_view(request, token: str):
    """Landing page of the emailed link. Anyone with the link sees what it offers; accepting
    needs the invited address to be signed in."""
    invitation = invitation_get_by_token(token=token)
    error = None
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect(f"{request.build_absolute_uri('/accounts/login/')}?next={request.path}")
        try:
            membership = invitation_accept(token=token, user=request.user)
        except ValidationError as exc:
            error = " ".join(exc.messages)
        else:
            messages.success(request, f"Welcome to {membership.organization.name}. Your role is {membership.role}.")
            return redirect("accounts:organization-detail", slug=membership.organization.slug)
    return render(
        request,
        "accounts/invitation_accept.html",
        {"invitation": invitation, "error": error},
        status=400 if error else 200,
    )
