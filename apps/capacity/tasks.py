"""Periodic work of the capacity app (scheduled by Celery beat, see portal/settings/data.py)."""

from celery import shared_task

from .services.nodes import node_liveness_check as _node_liveness_check


@shared_task(ignore_result=True)
def node_liveness_check() -> int:
    return _node_liveness_check()
