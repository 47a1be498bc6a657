"""What a page of instances has cost so far: the provider of apps.instances.hooks'
`instance_costs_get`, which the instance list (below billing) asks through the hook."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from django.utils import timezone

from apps.instances.hooks import InstanceCost

from ..models import MeteredRun
from .usage import run_elapsed_cost_get


def instance_run_costs_get(*, instance_ids: Sequence[UUID], now: datetime | None = None) -> dict[UUID, InstanceCost]:
    """Each listed instance's open run: its cost and seconds so far, priced as its detail page
    prices it (run_elapsed_cost_get). One query, whatever the number of instances."""
    now = now or timezone.now()
    runs = MeteredRun.objects.filter(instance_id__in=list(instance_ids), ended_at__isnull=True).only(
        "instance_id", "hourly_amount", "currency", "started_at"
    )
    costs = {}
    for run in runs:
        seconds, amount = run_elapsed_cost_get(run=run, now=now)
        costs[run.instance_id] = InstanceCost(amount=amount, currency=run.currency, seconds=seconds)
    return costs
