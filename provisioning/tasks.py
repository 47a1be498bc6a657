"""Celery tasks that turn instances into workloads. Each takes an id, is idempotent (it reads the
instance and does nothing if the work is done), and retries only transient errors.

The task is the executor: it loads the instance once, asks the instance's driver what the
workload needs (provisioning/drivers, plain data in and out) and applies the outcome through the
apps.instances services. Nothing in apps.instances imports this module: actions enqueue these
tasks by name, and the reconciler returns what to enqueue again to `instances_reconcile` below.
"""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from apps.instances.models import Instance, InstanceState
from apps.instances.services.placement import instance_capacity_release, instance_schedule
from apps.instances.services.queue import instances_queue_place as queue_place
from apps.instances.services.reconcile import instances_reconcile as reconcile
from apps.instances.services.reconcile import instances_requeue_due
from provisioning.drivers.registry import driver_for_kind

TRANSIENT = (OperationalError, InterfaceError, ConnectionError, TimeoutError)
S = InstanceState


@shared_task(autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5, acks_late=True)
def instance_provision(instance_id: str) -> str:
    # The one read of the instance before the placement's transaction; the transition itself
    # then locks and re-reads it (compare-and-set), which no caller can skip.
    instance = (
        Instance.objects.select_related("offering", "flavor", "region", "organization", "project")
        .filter(pk=instance_id)
        .first()
    )
    if instance is None:
        return "gone"
    if instance.state != S.REQUESTED:
        return "done"  # placed already, or stopped before it was placed: a repeated delivery
    needs = driver_for_kind(instance.offering.kind).placement_needs()
    instance_schedule(instance=instance, needs=needs)
    return "done"


@shared_task(autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5, acks_late=True)
def instance_release(instance_id: str) -> str:
    """Give back the capacity of an ended instance (deleted, or failed before its node answered)."""
    instance = Instance.objects.filter(pk=instance_id).first()
    if instance is None:
        return "gone"
    if instance.state in (S.TERMINATED, S.FAILED):
        instance_capacity_release(instance=instance)
    return "done"


@shared_task(autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5, acks_late=True)
def instances_queue_place() -> int:
    """Place queued launches that now fit (enqueued when an allocation is released). Idempotent:
    a pass with nothing queued, or nothing free, changes nothing."""
    return len(queue_place())


@shared_task(ignore_result=True)
def instances_reconcile() -> dict:
    # A provision task that never ran (worker killed before or during it): enqueue it again.
    requeue = instances_requeue_due()
    for instance_id in requeue:
        instance_provision.delay(str(instance_id))
    done = reconcile()
    # The queue's backstop: capacity that came back without a release (a node up again, a new one).
    return {"requeued": len(requeue), **done, "dequeued": len(queue_place())}
