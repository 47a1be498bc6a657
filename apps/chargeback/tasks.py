"""Periodic work of the chargeback app (Celery beat, see portal/settings/data.py)."""

from __future__ import annotations

from celery import shared_task

from .services.rollup import usage_rollup_run


@shared_task(name="chargeback.usage_rollup", ignore_result=True)
def usage_rollup() -> dict:
    """Fold new usage records, reservation charges and finished hours of GPU telemetry into the
    hourly and daily roll-ups. Takes no ids: each run reads its cursors, so a repeated or
    overlapping run adds nothing twice (a run finding another at work returns busy)."""
    result = usage_rollup_run()
    return {"records": result.records, "charges": result.charges, "samples": result.samples, "busy": result.busy}
