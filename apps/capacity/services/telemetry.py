"""GPU telemetry history: pruning what is older than the retention. Samples are written by the
telemetry report itself (services.reports), in the same statement as the latest values."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from ..models import GpuSample


def gpu_samples_prune(*, now: datetime | None = None) -> int:
    """Delete samples older than CAPACITY_TELEMETRY_RETENTION_DAYS; returns how many. One
    statement (the BRIN index on `minute` finds the old end of the table), idempotent."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.CAPACITY_TELEMETRY_RETENTION_DAYS)
    deleted, _ = GpuSample.objects.filter(minute__lt=cutoff).delete()
    return deleted
