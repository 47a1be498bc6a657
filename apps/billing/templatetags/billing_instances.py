"""What an instance has cost, for the instance's own page. The page belongs to the instances app,
which is below billing and may not import it; templates load this library by name instead."""

from __future__ import annotations

from django import template
from django.utils import timezone

from ..selectors.preview import run_unmetered_seconds
from ..selectors.usage import instance_running_cost_get, instance_usage_total_get
from ..services.metering import usage_cost_since

register = template.Library()


@register.simple_tag
def instance_cost(instance) -> dict:
    """`{% instance_cost instance as cost %}`: the current run so far (ticking on the page), shown
    only while the instance is RUNNING, and the instance's total over all its runs: its metered
    records (as its invoice lines count them) plus the seconds of an open run not yet metered.
    A stopped instance's run is closed with its stop, so it shows its total and nothing ticks."""
    now = timezone.now()
    cost, seconds, run = instance_running_cost_get(instance_id=instance.pk, now=now)
    total_seconds, total_cost = instance_usage_total_get(instance_id=instance.pk)
    if run is not None:
        total_seconds += run_unmetered_seconds(run=run, now=now)
        total_cost += usage_cost_since(run=run, now=now)
    price = getattr(instance, "billing_price", None) if (run or total_seconds) else None
    return {
        "run": run if run is not None and instance.state == "running" else None,
        "run_cost": cost,
        "run_seconds": seconds,
        "used_seconds": total_seconds,
        "used_cost": total_cost,
        "currency": run.currency if run else (price.currency if price else "USD"),
    }
