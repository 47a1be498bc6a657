"""Periodic work of the capacity app (scheduled by Celery beat, see portal/settings/data.py)."""

from uuid import UUID

from celery import shared_task

from .models import Reservation
from .services.capacity_summary import node_capacity_repair as _node_capacity_repair
from .services.nodes import node_liveness_check as _node_liveness_check
from .services.reservations import reservation_start as _reservation_start
from .services.reservations import reservations_due_run as _reservations_due_run
from .services.telemetry import gpu_samples_prune as _gpu_samples_prune


@shared_task(ignore_result=True)
def node_liveness_check() -> int:
    return _node_liveness_check()


@shared_task(ignore_result=True)
def node_capacity_repair() -> int:
    """Recount the per-node capacity summary and fix any row that drifted (normally none: triggers
    keep it). Idempotent; returns how many summary rows it wrote or removed."""
    return _node_capacity_repair()


@shared_task(ignore_result=True)
def gpu_samples_prune() -> int:
    """Drop GPU telemetry history past its retention (hourly). Idempotent."""
    return _gpu_samples_prune()


@shared_task(ignore_result=True)
def reservations_due() -> dict[str, int]:
    """Every ~30 s: end reservations whose window is over, hold those that are due (and retry the
    short ones). Idempotent."""
    return _reservations_due_run()


@shared_task(ignore_result=True)
def reservation_start(reservation_id: str) -> None:
    """Enqueued with an ETA at a reservation's start: hold it on time, not at the next pass. Idempotent."""
    try:
        _reservation_start(reservation_id=UUID(reservation_id))
    except Reservation.DoesNotExist:
        return  # deleted meanwhile (its organization went): nothing to hold
