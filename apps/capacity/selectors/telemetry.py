"""Reads of GPU telemetry history (GpuSample, one row per GPU and minute) as series for charts:
the minutes of a window, and per GPU or per region a value for each minute (None where nothing
was reported, so a chart shows a gap rather than a made-up line). One query each.

These take GPU ids, not an organization: callers scope them (the instance page passes the GPUs
of an instance it looked up in the caller's organization; the region view is for operators).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Avg
from django.utils import timezone

from ..models import GpuSample


@dataclass(frozen=True)
class TelemetrySeries:
    minutes: list[datetime]
    # key (a GPU id or a region name) -> one value per minute
    utilization_pct: dict[object, list[float | None]]
    memory_used_bytes: dict[object, list[int | None]]


def _minutes(since: datetime, until: datetime) -> list[datetime]:
    first = since.replace(second=0, microsecond=0)
    if first < since:
        first += timedelta(minutes=1)
    count = max(int((until - first).total_seconds() // 60) + 1, 0)
    return [first + timedelta(minutes=i) for i in range(count)]


def gpu_series_get(*, gpu_ids: Iterable[int], since: datetime, until: datetime | None = None) -> TelemetrySeries:
    """Utilisation and memory used per GPU for every minute in [since, until]."""
    until = until or timezone.now()
    ids = list(gpu_ids)
    minutes = _minutes(since, until)
    position = {m: i for i, m in enumerate(minutes)}
    util: dict[object, list] = {pk: [None] * len(minutes) for pk in ids}
    memory: dict[object, list] = {pk: [None] * len(minutes) for pk in ids}
    if ids and minutes:
        rows = GpuSample.objects.filter(gpu_id__in=ids, minute__gte=minutes[0], minute__lte=minutes[-1]).values_list(
            "gpu_id", "minute", "utilization_pct", "memory_used_bytes"
        )
        for gpu_id, minute, pct, used in rows:
            i = position[minute]
            util[gpu_id][i], memory[gpu_id][i] = pct, used
    return TelemetrySeries(minutes, util, memory)


def region_utilisation_get(*, since: datetime, until: datetime | None = None) -> TelemetrySeries:
    """Average utilisation of the GPUs that reported, per region name and minute (operators).
    `memory_used_bytes` is left empty."""
    until = until or timezone.now()
    minutes = _minutes(since, until)
    position = {m: i for i, m in enumerate(minutes)}
    util: dict[object, list] = {}
    if minutes:
        rows = (
            GpuSample.objects.filter(minute__gte=minutes[0], minute__lte=minutes[-1])
            .values("gpu__node__region__name", "minute")
            .annotate(avg=Avg("utilization_pct"))
            .order_by("gpu__node__region__name")
            .values_list("gpu__node__region__name", "minute", "avg")
        )
        for region, minute, avg in rows:
            series = util.setdefault(region, [None] * len(minutes))
            series[position[minute]] = None if avg is None else round(float(avg), 1)
    return TelemetrySeries(minutes, util, {})
