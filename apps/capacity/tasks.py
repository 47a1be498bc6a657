"""Periodic work of the capacity app (scheduled by Celery beat, see portal/settings/data.py)."""

from datetime import datetime, timedelta
from uuid import UUID

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

from .models import Reservation
from .services.capacity_summary import node_capacity_repair as _node_capacity_repair
from .services.nodes import node_liveness_check as _node_liveness_check
from .services.nodes import node_liveness_next_sweep_at as _node_liveness_next_sweep_at
from .services.reservations import reservation_start as _reservation_start
from .services.reservations import reservations_due_run as _reservations_due_run
from .services.telemetry import gpu_samples_prune as _gpu_samples_prune

# The epoch second of the chained sweep already planned (see node_liveness_check), in the cache.
LIVENESS_PLANNED_KEY = "capacity:liveness:planned"
# A planned sweep this long overdue was lost (a worker restart drops ETA tasks it held): replan.
LIVENESS_PLAN_STALE_S = 5.0


# Never plan a sweep sooner than this after the one planning it: should a late node somehow stay
# where the sweep cannot move it, the chain then runs a few times a second, not in a tight loop.
LIVENESS_MIN_GAP = timedelta(milliseconds=250)


def liveness_next_sweep_eta(*, now: datetime) -> datetime | None:
    """When to run the next sweep: at the oldest heartbeat's deadline, LIVENESS_MIN_GAP at the
    soonest; None when no node can go down."""
    next_at = _node_liveness_next_sweep_at()
    return None if next_at is None else max(next_at, now + LIVENESS_MIN_GAP)


def liveness_plan_needed(*, planned: float | None, next_at: float, now: float) -> bool:
    """Whether a sweep must be planned for `next_at`: not when one already planned runs at or
    before it (that one plans the next in its turn), unless that one is overdue, so lost."""
    return planned is None or planned > next_at or planned < now - LIVENESS_PLAN_STALE_S


@shared_task(ignore_result=True)
def node_liveness_check(planned_at: float | None = None) -> int:
    """Mark down the nodes that missed their beats, then plan the next sweep for the moment the
    oldest heartbeat crosses the cut-off, so a silent node is down within 2 intervals + 1 s of its
    last beat while the sweeps run about once an interval, not several times a second. Celery beat
    runs it too, every half interval: a backstop that starts the chain again if it was lost.
    Idempotent; two chains at once only cost a sweep more, and merge at the next planning."""
    went_down = _node_liveness_check()
    if planned_at is not None and cache.get(LIVENESS_PLANNED_KEY) == planned_at:
        cache.delete(LIVENESS_PLANNED_KEY)  # this was the planned one: the next plan replaces it
    now = timezone.now()
    eta = liveness_next_sweep_eta(now=now)
    if eta is not None:
        at = eta.timestamp()
        if liveness_plan_needed(planned=cache.get(LIVENESS_PLANNED_KEY), next_at=at, now=now.timestamp()):
            cache.set(LIVENESS_PLANNED_KEY, at, timeout=None)
            node_liveness_check.apply_async(kwargs={"planned_at": at}, eta=eta)
    return went_down


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
