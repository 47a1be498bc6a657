"""Spend made of real metered usage: runs cut into usage records by the metering service, so
budgets, caps and eligibility read exactly what they read in production."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from apps.billing.selectors.usage import month_bounds
from apps.instances.models import Instance, InstanceState
from tests.factories.billing import InstanceFactory, run_open, run_record

RUN_S = 60


def spend_add(*, organization, amount: Decimal | str, project=None) -> Instance:
    """Usage worth exactly `amount` this month: a finished 60 s run of a new, stopped instance."""
    now = timezone.now()
    start = max(month_bounds(now)[0], now - timedelta(hours=1))
    extra = {"project": project} if project is not None else {}
    instance = InstanceFactory(organization=organization, **extra)
    run_record(
        instance=instance,
        started_at=start,
        ended_at=start + timedelta(seconds=RUN_S),
        hourly_amount=Decimal(str(amount)) * 3600 / RUN_S,
    )
    return instance


def instance_running(*, organization, hourly: Decimal | str, project=None, since_s: int = 0, owner=None) -> Instance:
    """A RUNNING instance with an open metered run that started `since_s` seconds ago."""
    started = timezone.now() - timedelta(seconds=since_s)
    extra = {"project": project} if project is not None else {}
    if owner is not None:
        extra["owner"] = owner
    instance = InstanceFactory(organization=organization, state=InstanceState.RUNNING, **extra)
    run_open(instance=instance, started_at=started, hourly_amount=hourly)
    return instance
