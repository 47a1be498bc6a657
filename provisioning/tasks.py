"""Celery tasks that turn instances into workloads. Each takes an id, is idempotent (it re-reads
the instance and does nothing if the work is done), and retries only transient errors."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from provisioning.drivers.registry import drivers_for_kind

TRANSIENT = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


def _driver_for(instance):
    drivers = drivers_for_kind(instance.offering.kind)
    if not drivers:
        raise LookupError(f"No driver serves {instance.offering.kind}")
    return drivers[0]


@shared_task(autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5, acks_late=True)
def instance_provision(instance_id: str) -> str:
    from apps.instances.models import Instance

    instance = Instance.objects.select_related("offering").filter(pk=instance_id).first()
    if instance is None:
        return "gone"
    _driver_for(instance).start(instance_id)
    return "done"


@shared_task(autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5, acks_late=True)
def instance_release(instance_id: str) -> str:
    """Give back the capacity of an ended instance (deleted, or failed before its node answered)."""
    from apps.instances.models import Instance

    instance = Instance.objects.select_related("offering").filter(pk=instance_id).first()
    if instance is None:
        return "gone"
    _driver_for(instance).stop(instance_id)
    return "done"


@shared_task(ignore_result=True)
def instances_reconcile() -> dict:
    from apps.instances.services.reconcile import instances_reconcile as reconcile

    return reconcile()
