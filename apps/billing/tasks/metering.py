"""Metering tasks. Tasks take ids, are idempotent, and retry only transient errors."""

from __future__ import annotations

from celery import shared_task

from ..services.metering import usage_open_runs_meter


@shared_task(ignore_result=True)
def usage_meter() -> int:
    """Cut every open run's usage up to now (beat, every BILLING["METER_EVERY_S"])."""
    return usage_open_runs_meter()
