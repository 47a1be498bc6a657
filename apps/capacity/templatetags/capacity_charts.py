"""Chart specs of GPU telemetry history (selectors.telemetry) for templates: `{% load
capacity_charts %}`. Tags, so that a partial included with one line (the instance page, the
operators' inventory) brings its own data, and a push or poll of the partial redraws it."""

from __future__ import annotations

from datetime import timedelta

from django import template
from django.utils import timezone

from portal.ui.charts import Series, chart_spec

from ..selectors.telemetry import gpu_series_get, region_utilisation_get

register = template.Library()
GIB = 2**30


def _labels(minutes) -> list[str]:
    return [f"{timezone.localtime(m):%H:%M}" for m in minutes]


def _gib(values: list[int | None]) -> list[float | None]:
    return [None if b is None else round(b / GIB, 2) for b in values]


@register.simple_tag
def gpu_usage_charts(gpus, minutes: int = 60) -> dict:
    """`{% gpu_usage_charts gpus as charts %}`: utilisation (%) and memory used (GiB) of `gpus`
    (Gpu rows, or slices with a `.gpu`) over the last `minutes`, one line per GPU."""
    chosen = {}
    for item in gpus or []:
        gpu = getattr(item, "gpu", item)
        chosen.setdefault(gpu.pk, gpu)
    ordered = sorted(chosen.values(), key=lambda g: g.index)
    series = gpu_series_get(gpu_ids=list(chosen), since=timezone.now() - timedelta(minutes=minutes))
    labels = _labels(series.minutes)
    memory_max = max((g.memory_bytes for g in ordered), default=0) / GIB or None
    return {
        "utilisation": chart_spec(
            kind="line",
            labels=labels,
            series=[Series(f"GPU #{g.index}", series.utilization_pct[g.pk]) for g in ordered],
            unit="%",
            y_max=100,
        ),
        "memory": chart_spec(
            kind="line",
            labels=labels,
            series=[Series(f"GPU #{g.index}", _gib(series.memory_used_bytes[g.pk])) for g in ordered],
            unit="GiB",
            y_max=memory_max,
        ),
    }


@register.simple_tag
def region_utilisation_chart(hours: int = 6) -> dict:
    """`{% region_utilisation_chart as spec %}`: average GPU utilisation per region (one line
    each) over the last `hours`, for operators."""
    series = region_utilisation_get(since=timezone.now() - timedelta(hours=hours))
    return chart_spec(
        kind="line",
        labels=_labels(series.minutes),
        series=[Series(region, values) for region, values in sorted(series.utilization_pct.items())],
        unit="%",
        y_max=100,
    )
