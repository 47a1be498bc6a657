"""The idle-stop flag of a notebook (`Instance.idle_warned_at`), written only here, with the
event that says why, in one transaction. It is not part of any node's desired state, so it
changes no version and wakes no agent."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from django.db import transaction

from ..models import Instance, InstanceState
from .lifecycle import instance_note


@transaction.atomic
def instance_idle_warn(*, instance_id: UUID, at: datetime, message: str, source: str = "reconciler") -> bool:
    """Mark a running instance as warned at `at`, with `message` in its log. Compare-and-set on
    an unwarned running instance, so two reconciler passes warn once. True when it warned."""
    if not Instance.objects.filter(pk=instance_id, state=InstanceState.RUNNING, idle_warned_at__isnull=True).update(
        idle_warned_at=at
    ):
        return False
    instance_note(instance=Instance.objects.get(pk=instance_id), message=message, source=source)
    return True


@transaction.atomic
def instance_idle_clear(*, instance_id: UUID, message: str | None = None, source: str = "reconciler") -> bool:
    """A warned instance got busy again: it starts a fresh idle period. `message`, if any, goes
    in its log. True when there was a warning to clear."""
    if not Instance.objects.filter(pk=instance_id, idle_warned_at__isnull=False).update(idle_warned_at=None):
        return False
    if message:
        instance_note(instance=Instance.objects.get(pk=instance_id), message=message, source=source)
    return True
