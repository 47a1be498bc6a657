"""What an instance has cost, for the instance's own page. The page belongs to the instances app,
which is below billing and may not import it; templates load this library by name instead."""

from __future__ import annotations

from django import template

from ..selectors.usage import instance_running_cost_get, instance_usage_total_get

register = template.Library()


@register.simple_tag
def instance_cost(instance) -> dict:
    """`{% instance_cost instance as cost %}`: what the instance's current run has cost so far
    (ticking on the page); when it is not running, the metered usage of all its runs, as its
    invoice lines will count it."""
    cost, seconds, run = instance_running_cost_get(instance_id=instance.pk)
    used_seconds, used_cost = (0, 0) if run else instance_usage_total_get(instance_id=instance.pk)
    return {
        "run": run,
        "run_cost": cost,
        "run_seconds": seconds,
        "used_seconds": used_seconds,
        "used_cost": used_cost,
        "currency": instance.billing_price.currency if used_seconds else "",
    }
