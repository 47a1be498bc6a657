"""The instance lifecycle. Every state change goes through `instance_transition`: a
compare-and-set on the current state plus an event row, announced after commit. It locks the
instance row, then its in-transaction subscribers (metering: the open run) lock what comes after
it: see the lock order in portal/db.py. Apps above this one follow transitions through
`apps.instances.hooks`, never by being imported here."""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from django.core.exceptions import ValidationError
from django.utils import timezone

from portal.db import atomic_retry

from ..hooks import transition_announce
from ..live import instance_changed_on_commit
from ..models import Instance, InstanceEvent, InstanceState

S = InstanceState
ALLOWED_TRANSITIONS: dict[str, set[str]] = {
    # QUEUED -> REQUESTED: capacity freed and the queue placed it (services.queue).
    S.QUEUED: {S.REQUESTED, S.FAILED, S.STOPPED, S.TERMINATED},
    S.REQUESTED: {S.QUEUED, S.SCHEDULED, S.FAILED, S.STOPPED, S.TERMINATED},
    S.SCHEDULED: {S.PROVISIONING, S.RUNNING, S.STOPPING, S.FAILED, S.LOST},
    S.PROVISIONING: {S.RUNNING, S.STOPPING, S.FAILED, S.LOST},
    S.RUNNING: {S.STOPPING, S.FAILED, S.LOST},
    S.STOPPING: {S.STOPPED, S.FAILED, S.LOST},
    S.STOPPED: {S.REQUESTED, S.TERMINATED},
    S.FAILED: {S.REQUESTED, S.TERMINATED},
    S.LOST: {S.REQUESTED, S.TERMINATED, S.STOPPED},
    S.TERMINATED: set(),
}


@atomic_retry
def instance_transition(
    *,
    instance_id: UUID,
    to_state: str,
    message: str,
    expected_from: Iterable[str],
    actor=None,
    source: str = "portal",
    **fields,
) -> Instance | None:
    """Move an instance from one of `expected_from` to `to_state`, with `fields` set in the same
    UPDATE. Returns the instance, or None if it was not in an expected state (someone else moved
    it first): callers that retry or run periodically treat that as done, not as an error."""
    # NO KEY UPDATE: rows that point at the instance (events, runs, usage records) take KEY SHARE
    # on it when inserted, by other transactions too; plain FOR UPDATE would make them wait here.
    instance = Instance.objects.select_for_update(no_key=True).filter(pk=instance_id).first()
    if instance is None or instance.state not in set(expected_from):
        return None
    if to_state not in ALLOWED_TRANSITIONS[instance.state]:
        raise ValidationError(f"An instance that is {instance.state} cannot become {to_state}.")
    from_state = instance.state
    now = timezone.now()
    Instance.objects.filter(pk=instance.pk, state=from_state).update(
        state=to_state, state_reason=message[:500], state_changed_at=now, **fields
    )
    InstanceEvent.objects.create(
        instance=instance,
        from_state=from_state,
        to_state=to_state,
        message=message[:500],
        actor=actor,
        source=source,
        created_at=now,
    )
    instance.refresh_from_db()
    transition_announce(instance=instance, from_state=from_state, at=now)
    instance_changed_on_commit(instance_id=instance.pk, organization_id=instance.organization_id)
    if from_state == S.QUEUED:
        _queue_line_changed(instance)
    return instance


def _queue_line_changed(instance: Instance) -> None:
    """Someone left a queue: the position shown on the pages of those behind it changed."""
    behind = Instance.objects.filter(
        state=S.QUEUED, region_id=instance.region_id, flavor_id=instance.flavor_id
    ).values_list("pk", "organization_id")
    for instance_id, organization_id in behind:
        instance_changed_on_commit(instance_id=instance_id, organization_id=organization_id)


def instance_note(*, instance: Instance, message: str, source: str = "portal", actor=None) -> None:
    """An event that is not a state change (a warning, a step inside a state)."""
    InstanceEvent.objects.create(instance=instance, message=message[:500], source=source, actor=actor)
    instance_changed_on_commit(instance_id=instance.pk, organization_id=instance.organization_id)
