"""Who may launch. One function, so that every launch and start asks the same question."""

from __future__ import annotations

from django.core.exceptions import ValidationError

from apps.accounts.models import Organization, Project

from .hooks import launch_checks_run


def launch_eligibility_check(*, organization: Organization, project: Project | None = None) -> None:
    """Raise ValidationError with the reason if `organization` (and `project`) may not start new
    capacity. Billing decides (a usable card, credits or invoice terms; payment standing; hard
    caps) through the launch check it registers (apps.instances.hooks): billing is above this app."""
    if organization is None:
        raise ValidationError("Choose an organization to launch in.")
    launch_checks_run(organization=organization, project=project)
