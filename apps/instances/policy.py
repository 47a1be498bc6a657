"""Who may launch. One function, so that every launch and start asks the same question."""

from __future__ import annotations

from django.core.exceptions import ValidationError

from apps.accounts.models import Organization, Project


def launch_eligibility_check(*, organization: Organization, project: Project | None = None) -> None:
    """Raise ValidationError with the reason if `organization` (and `project`) may not start new
    capacity: billing decides (a usable card, credits or invoice terms; payment standing; hard caps)."""
    if organization is None:
        raise ValidationError("Choose an organization to launch in.")
    # Imported here: billing's rules stop instances through this app's services, which import this module.
    from apps.billing.services.eligibility import billing_launch_eligibility_check

    billing_launch_eligibility_check(organization=organization, project=project)
