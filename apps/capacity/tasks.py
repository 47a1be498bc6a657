"""Periodic work of the capacity app (scheduled by Celery beat, see portal/settings/data.py)."""

from celery import shared_task

from .services.capacity_summary import node_capacity_repair as _node_capacity_repair
from .services.nodes import node_liveness_check as _node_liveness_check
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
