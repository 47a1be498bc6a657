"""Tables of the accounts pages (portal.ui.tables): members, API keys, SSH keys, the user's organizations."""

from __future__ import annotations

import django_tables2 as tables
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from portal.ui.badges import state_tone
from portal.ui.tables import PortalTable, cell_forms, link

from .models import ApiKey, Membership, Role, SshKey
from .roles import OrgAccess
from .ssh_keys import ssh_public_key_parse

# --- members -----------------------------------------------------------------------------------


class MemberTable(PortalTable):
    email = tables.Column(verbose_name="Member", accessor="user__email")
    role = tables.Column(verbose_name="Role", attrs={"td": {"data-testid": "role"}})
    since = tables.DateColumn(verbose_name="Since", accessor="created_at", format="Y-m-d",
                              attrs={"td": {"class": "muted"}})
    actions = tables.Column(verbose_name="", accessor="pk", orderable=False, empty_values=(),
                            attrs={"td": {"class": "actions"}})

    class Meta(PortalTable.Meta):
        row_attrs = {"data-member": lambda record: record.user.email}
        order_by = ("since",)

    def __init__(self, data, *, access: OrgAccess, **kwargs):
        super().__init__(data, **kwargs)
        self.access = access

    def render_role(self, record: Membership):
        # The role's value (not its label), as the role form posts it and as before (scripts read it).
        return record.role

    def render_actions(self, record: Membership):
        access, organization = self.access, self.access.organization
        context = {"m": record, "organization": organization, "roles": Role.choices,
                   "manage": access.can_manage_members and record.user_id != access.user_id,
                   "leave": record.user_id == access.user_id and organization.kind != "personal"}
        return cell_forms("accounts/partials/_member_actions.html", context)


# --- API keys ----------------------------------------------------------------------------------


class ApiKeyTable(PortalTable):
    name = tables.Column(verbose_name="Name")
    prefix = tables.Column(verbose_name="Prefix", orderable=False)
    role = tables.Column(verbose_name="Role")
    created_by = tables.Column(verbose_name="Created by", accessor="created_by__email")
    expires_at = tables.DateColumn(verbose_name="Expires", format="Y-m-d", default="never")
    last_used_at = tables.Column(verbose_name="Last used", default="never")
    status = tables.Column(verbose_name="Status", accessor="pk", orderable=False, empty_values=())
    actions = tables.Column(verbose_name="", accessor="pk", orderable=False, empty_values=(),
                            attrs={"td": {"class": "actions"}})

    class Meta(PortalTable.Meta):
        row_attrs = {"data-key": lambda record: record.name}
        empty_text = "No keys yet."

    def __init__(self, data, *, organization, csrf_token: str, **kwargs):
        super().__init__(data, **kwargs)
        self.organization = organization
        self.csrf_token = csrf_token

    def render_prefix(self, value):
        return format_html("<code>nck_{}_…</code>", value)

    def render_last_used_at(self, value):
        return f"{timesince(value, timezone.now())} ago"

    def render_status(self, record: ApiKey):
        status = "active" if record.is_active else "revoked" if record.revoked_at else "expired"
        return render_to_string("ui/badge.html", {"state": status, "label": status, "tone": state_tone(status),
                                                  "testid": "key-status"})

    def render_actions(self, record: ApiKey):
        if not record.is_active:
            return ""
        url = reverse("accounts:api-key-revoke", args=[self.organization.slug, record.pk])
        return render_to_string("accounts/partials/_api_key_actions.html", {"url": url, "csrf_token": self.csrf_token})


# --- SSH keys ----------------------------------------------------------------------------------


class SshKeyTable(PortalTable):
    name = tables.Column(verbose_name="Name")
    key_type = tables.Column(verbose_name="Type", accessor="public_key", orderable=False)
    fingerprint = tables.Column(verbose_name="Fingerprint", orderable=False)
    created_at = tables.DateColumn(verbose_name="Added", format="Y-m-d", attrs={"td": {"class": "muted"}})
    actions = tables.Column(verbose_name="", accessor="pk", orderable=False, empty_values=(),
                            attrs={"td": {"class": "actions"}})

    class Meta(PortalTable.Meta):
        row_attrs = {"data-ssh-key": lambda record: record.name}
        empty_text = "No SSH keys yet."

    def __init__(self, data, *, csrf_token: str, **kwargs):
        super().__init__(data, **kwargs)
        self.csrf_token = csrf_token

    def render_key_type(self, value):
        # "ED25519 256" / "RSA 4096", as `ssh-keygen -l` names them; the stored key was parsed on add.
        return ssh_public_key_parse(value).label

    def render_fingerprint(self, value):
        return format_html('<code data-testid="fingerprint">{}</code>', value)

    def render_actions(self, record: SshKey):
        url = reverse("accounts:ssh-key-delete", args=[record.pk])
        return render_to_string("accounts/ssh_keys_actions.html",
                                {"url": url, "name": record.name, "csrf_token": self.csrf_token})


# --- the user's organizations ------------------------------------------------------------------


class OrganizationTable(PortalTable):
    name = tables.Column(verbose_name="Name", accessor="organization__name")
    kind = tables.Column(verbose_name="Kind", accessor="organization__kind")
    role = tables.Column(verbose_name="Your role")

    class Meta(PortalTable.Meta):
        row_attrs = {"data-organization": lambda record: record.organization.slug}
        empty_text = "You are not a member of any organization."

    def render_name(self, value, record: Membership):
        return link(reverse("accounts:organization-detail", args=[record.organization.slug]), value)

    def render_kind(self, record: Membership):
        return record.organization.get_kind_display()

    def render_role(self, record: Membership):
        return record.get_role_display()
