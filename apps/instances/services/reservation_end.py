"""A reservation's window ends: the instances launched into it are stopped before its capacity is
given back. Subscribed to apps.capacity.hooks in this app's AppConfig.ready() (capacity may not
import instances)."""

from __future__ import annotations

from datetime import datetime

from apps.capacity.models import Reservation
from apps.capacity.services.reservations import when

from ..models import STOPPABLE_STATES, Instance
from .actions import instance_stop_request


def reservation_instances_stop(*, reservation: Reservation, at: datetime) -> None:
    """Inside the transaction that ends `reservation` (its row locked, its capacity not yet given
    back): every instance launched into it that still runs or waits is stopped through the one
    stop, with the reason in its log. Instance rows are taken in created_at order (portal/db.py)."""
    message = f"Stopped: the window of reservation {reservation.pk} ended at {when(reservation.ends_at)}"
    running = Instance.objects.filter(reservation=reservation, state__in=STOPPABLE_STATES).order_by("created_at", "id")
    for instance in running:
        instance_stop_request(instance=instance, message=message, source="portal")
