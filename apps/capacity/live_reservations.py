"""Channels groups of the capacity calendar: an organization's reservations page follows its
reservations' bookings and state changes."""

from __future__ import annotations

from portal.live import live_notify_on_commit


def reservations_group(organization_id: int) -> str:
    return f"org-{organization_id}-reservations"


def reservations_changed_on_commit(*, organization_id: int) -> None:
    """A reservation was booked or changed state: its organization's calendar re-renders after commit."""
    live_notify_on_commit(group=reservations_group(organization_id))
