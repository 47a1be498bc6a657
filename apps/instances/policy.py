"""Who may launch. One function, so that billing (cards, credits, spend caps) plugs in here."""

from __future__ import annotations

from django.core.exceptions import ValidationError

from apps.accounts.models import Organization


def launch_eligibility_check(*, organization: Organization) -> None:
    """Raise ValidationError with the reason if `organization` may not start new capacity.

    Today only the quota (checked by the allocator) limits launches: there is no billing yet.
    The billing issue adds the card / credit / spend-cap rules here and nowhere else.
    """
    if organization is None:
        raise ValidationError("Choose an organization to launch in.")
