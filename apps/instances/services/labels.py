"""An instance's labels: key=value pairs chargeback groups and filters by, overriding its
project's labels key by key (cost-centre=CC-2 on one instance of a CC-1 project)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from apps.accounts.labels import labels_format, labels_validate
from apps.accounts.models import User
from apps.accounts.roles import OrgAccess

from ..models import Instance
from .lifecycle import instance_note


def instance_labels_may_set(*, access: OrgAccess, instance: Instance) -> bool:
    """Owners and admins for any instance; a member who may launch for their own."""
    if instance.organization_id != access.organization.pk:
        return False
    return access.can_manage_members or (access.can_launch and instance.owner_id == access.user_id)


@transaction.atomic
def instance_labels_set(*, access: OrgAccess, instance: Instance, labels: dict[str, str]) -> Instance:
    """Replace the instance's labels (send {} to clear them), with a line in its event log."""
    if not instance_labels_may_set(access=access, instance=instance):
        raise PermissionDenied("Only the instance's owner or an organization admin can change its labels.")
    try:
        labels = labels_validate(labels)
    except ValidationError as error:
        raise ValidationError({"labels": error.messages}) from error
    Instance.objects.filter(pk=instance.pk).update(labels=labels)
    instance.labels = labels
    # A line in its log, and the live pages redrawn (instance_note publishes on commit).
    instance_note(
        instance=instance,
        message=f"Labels set: {labels_format(labels) or '(none)'}",
        source="user",
        actor=User.objects.filter(pk=access.user_id).first(),
    )
    return instance
