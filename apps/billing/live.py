"""Channels group that billing changes of an organization are announced to (the overview page
listens to it and to the organization's instances group)."""

from __future__ import annotations

from portal.live import live_notify_on_commit


def organization_billing_group(organization_id) -> str:
    return f"org-{organization_id}-billing"


def billing_changed_on_commit(*, organization_id) -> None:
    """Call after any write that changes what the billing overview shows (standing, credits,
    budgets, alerts, invoices): every open overview of the organization re-renders."""
    live_notify_on_commit(group=organization_billing_group(organization_id))
