"""Helpers shared by the accounts views: access lookup and turning service errors into messages."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.forms import Form

from ..roles import OrgAccess
from ..selectors import organization_access_get


def access_for(request, slug: str) -> OrgAccess:
    return organization_access_get(user=request.user, slug=slug)


def add_service_errors(form: Form, error: ValidationError) -> None:
    """Show a service's ValidationError on the form, field by field where it names fields."""
    if hasattr(error, "error_dict"):
        for field, messages in error.message_dict.items():
            form.add_error(field if field in form.fields else None, messages)
    else:
        form.add_error(None, error.messages)
