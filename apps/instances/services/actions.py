"""What users do with instances: launch, stop, start again, delete; and the one stop every
caller's stop comes down to (a person's, billing's).

Nothing here imports the apps above this one: billing's launch check, price capture and metering
follow through apps.instances.hooks, and provisioning's tasks are enqueued by name."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

from celery import signature
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import Project
from apps.accounts.roles import OrgAccess
from apps.accounts.selectors import ssh_keys_list
from apps.capacity.errors import AllocationRefused, RefusalReason
from apps.capacity.selectors.availability import flavor_slice_milli
from apps.capacity.services.quotas import quota_check
from apps.capacity.services.reservation_launch import reservation_launch_check
from apps.catalog.models import Flavor, Image, Region
from apps.catalog.selectors import offering_is_launchable
from portal.db import atomic_retry
from provisioning.drivers.registry import driver_for_kind

from ..hooks import transition_announce
from ..live import instance_changed_on_commit
from ..models import ACTIVE_STATES, Instance, InstanceEvent, InstanceState
from ..policy import launch_eligibility_check
from .lifecycle import instance_transition
from .placement import LaunchUnplaceable, availability_by_region, instance_capacity_release, launch_capacity_hold

NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
S = InstanceState


# By the name Celery registered them under, not by import: those tasks load instances and run
# this app's services, so importing them here would close a circle (instances ⇄ provisioning).
# The name is the contract between the web process and the worker anyway; a signature by name
# still runs the registered task object where one is (eager mode included).
PROVISION_TASK = "provisioning.tasks.instance_provision"
RELEASE_TASK = "provisioning.tasks.instance_release"


def _task_on_commit(task_name: str, instance_id) -> None:
    transaction.on_commit(lambda: signature(task_name, args=(str(instance_id),)).delay())


def instance_provision_on_commit(instance_id) -> None:
    """Hand the instance to its node once this transaction commits (the provision task)."""
    _task_on_commit(PROVISION_TASK, instance_id)


def _release_on_commit(instance_id) -> None:
    _task_on_commit(RELEASE_TASK, instance_id)


def _gpu_milli(flavor: Flavor) -> int:
    return (flavor_slice_milli(flavor) or 0) * max(flavor.gpu_count, 1)


def _queued_message(flavor: Flavor, region: Region) -> str:
    return f"Queued: waiting for {flavor.accelerator_label} in {region.code}"


@atomic_retry
def _authorized_keys(*, access: OrgAccess, kind: str, key_ids: Sequence[int]) -> list[str]:
    """The public key lines of the launching user's own keys `key_ids`, for an SSH instance."""
    if not driver_for_kind(kind).needs_ssh_keys:  # the one flag the launch form reads too
        return []
    wanted = set(key_ids)
    if not wanted:
        raise ValidationError({"ssh_keys": "Choose at least one of your SSH keys to log in with."})
    keys = list(ssh_keys_list(user=access.user_id).filter(pk__in=wanted).order_by("pk"))
    if len(keys) != len(wanted):
        # Another person's key (or a deleted one) reads the same as a missing one.
        raise ValidationError({"ssh_keys": "Choose only your own SSH keys (see your account's SSH keys)."})
    return [key.public_key.strip() for key in keys]


def instance_launch(
    *,
    access: OrgAccess,
    flavor: Flavor,
    image: Image,
    region: Region,
    name: str,
    project: Project | None = None,
    queue: bool = False,
    ssh_keys: Sequence[int] = (),
    reservation: uuid.UUID | None = None,
) -> Instance:
    """Launch: capacity is held in this transaction, so the instance comes back REQUESTED with its
    GPUs (the provision task hands them to the node). Without capacity it raises
    LaunchUnplaceable, with the availability per region, unless `queue`: then it comes back
    QUEUED, holding nothing, and services.queue places it when capacity frees."""
    if not access.can_launch:
        raise PermissionDenied("Your role cannot launch instances; ask an owner or admin.")
    offering = flavor.offering
    if not offering_is_launchable(offering=offering):
        raise ValidationError({"flavor": f"{offering.name} is not yet available to launch."})
    if not driver_for_kind(offering.kind).placement_needs().gpus_on_one_node:
        raise ValidationError({"flavor": f"{offering.name} workloads cannot be placed here yet."})
    if not image.applies_to(offering.kind):
        raise ValidationError({"image": f"{image.name} cannot run on {offering.name}."})
    authorized_keys = _authorized_keys(access=access, kind=offering.kind, key_ids=ssh_keys)
    name = (name or "").strip().lower()
    if not NAME_PATTERN.match(name):
        raise ValidationError({"name": "Use 1–63 lower-case letters, digits and hyphens, e.g. my-notebook."})
    organization = access.organization
    if Instance.objects.filter(organization=organization, name=name, state__in=ACTIVE_STATES).exists():
        raise ValidationError({"name": f"An active instance is already called “{name}”."})
    if project is None:
        project = Project.objects.filter(organization=organization).order_by("created_at", "id").first()
        if project is None:
            raise ValidationError({"project": "Create a project in this organization first."})
    elif project.organization_id != organization.pk:
        raise ValidationError({"project": "That project belongs to another organization."})
    if not region.is_active:
        raise ValidationError({"region": f"{region.name} is not taking new launches."})
    booked = None
    if reservation is not None:
        # Refused before anything is written: not started, over, another tenant's, another GPU model.
        booked = reservation_launch_check(
            organization=organization, flavor=flavor, region=region, reservation_id=reservation
        )
    launch_eligibility_check(organization=organization, project=project)
    try:
        # An early answer for the user; the allocator checks again, under a lock, when it places.
        # A reservation's GPUs are counted already (its hold is the organization's usage).
        if booked is None:
            quota_check(organization=organization, project=project, gpu_milli=_gpu_milli(flavor))
    except AllocationRefused as refused:
        raise ValidationError({"flavor": refused.message}) from refused
    instance_id = uuid.uuid4()
    allocation = None
    try:
        # Into a reservation: its own GPUs or a ValidationError naming what uses them (never queued).
        allocation = launch_capacity_hold(
            holder_id=instance_id,
            organization=organization,
            project=project,
            flavor=flavor,
            region=region,
            reservation=booked,
        )
    except AllocationRefused as refused:
        if refused.reason != RefusalReason.NO_CAPACITY:
            raise ValidationError({"flavor": refused.message}) from refused
        if not queue:
            raise LaunchUnplaceable(
                message=f"No free {flavor.accelerator_label} in {region.code} right now. Choose a region with "
                "free capacity, or ask to wait in the queue.",
                availability=availability_by_region(flavor=flavor),
            ) from refused
    instance = Instance.objects.create(
        id=instance_id,
        organization=organization,
        project=project,
        owner_id=access.user_id,
        name=name,
        offering=offering,
        flavor=flavor,
        image=image,
        region=region,
        state=S.REQUESTED,
        state_reason="Launch requested",
        allocation=allocation,
        reservation=booked,
        ssh_authorized_keys=authorized_keys,
    )
    InstanceEvent.objects.create(
        instance=instance, to_state=S.REQUESTED, message="Launch requested", actor_id=access.user_id, source="user"
    )
    # A launch is the transition from nothing to REQUESTED: billing captures the price here (and
    # refuses an unpriced flavor, which rolls the launch back), as it does at every start.
    transition_announce(instance=instance, from_state=None, at=instance.state_changed_at or timezone.now())
    # Open instance lists of the organization show the new row at once, not when it is scheduled.
    instance_changed_on_commit(instance_id=instance.pk, organization_id=organization.pk)
    if allocation is None:
        return instance_transition(
            instance_id=instance.pk,
            to_state=S.QUEUED,
            expected_from=[S.REQUESTED],
            message=_queued_message(flavor, region),
            source="user",
        )
    instance_provision_on_commit(instance.pk)
    return instance


def _check_can_operate(access: OrgAccess, instance: Instance) -> None:
    if instance.owner_id != access.user_id and not access.can_manage_members:
        raise PermissionDenied("Only the instance's owner or an organization admin can do this.")


@atomic_retry
def instance_stop(*, access: OrgAccess, instance: Instance) -> Instance:
    """A person asks for a stop: the role check, then the one stop (`instance_stop_request`).
    Idempotent: stopping an instance that is stopping or ended changes nothing."""
    _check_can_operate(access, instance)
    moved = instance_stop_request(
        instance=instance, message="Stop requested", unplaced_message="Stopped before it was placed", source="user"
    )
    instance.refresh_from_db()
    return moved or instance


@atomic_retry
def instance_start(*, access: OrgAccess, instance: Instance) -> Instance:
    """Start a stopped (or failed, or lost) instance again, in the same working directory when it
    lands on the same node."""
    _check_can_operate(access, instance)
    if not access.can_launch:
        raise PermissionDenied("Your role cannot start instances.")
    if instance.state not in (S.STOPPED, S.FAILED, S.LOST):
        raise ValidationError(
            f"Only a stopped instance can be started; this one is {instance.get_state_display().lower()}."
        )
    launch_eligibility_check(organization=instance.organization, project=instance.project)
    # The price is captured again by billing's subscriber to this transition (apps.instances.hooks).
    moved = instance_transition(
        instance_id=instance.pk,
        to_state=S.REQUESTED,
        message="Start requested",
        expected_from=[S.STOPPED, S.FAILED, S.LOST],
        source="user",
        allocation=None,
        idle_warned_at=None,
    )
    if moved:
        instance_provision_on_commit(instance.pk)
    return moved or instance


@atomic_retry
def instance_delete(*, access: OrgAccess, instance: Instance) -> Instance:
    """Delete: a running instance is stopped first; its working directory is removed by its node."""
    _check_can_operate(access, instance)
    if instance.state in (S.SCHEDULED, S.PROVISIONING, S.RUNNING):
        raise ValidationError("Stop the instance before deleting it.")
    if instance.state == S.STOPPING:
        raise ValidationError("The instance is stopping; delete it once it has stopped.")
    moved = instance_transition(
        instance_id=instance.pk,
        to_state=S.TERMINATED,
        message="Deleted",
        expected_from=[S.QUEUED, S.REQUESTED, S.STOPPED, S.FAILED, S.LOST],
        source="user",
    )
    if moved:
        _release_on_commit(instance.pk)
    return moved or instance


@atomic_retry
def instance_stop_request(
    *, instance: Instance, message: str, source: str, unplaced_message: str | None = None
) -> Instance | None:
    """The one stop every caller's comes down to: a person's (after `instance_stop`'s role check)
    and billing's (a reached hard cap, a suspended account), through the same transitions.
    `message` is what the instance's log says; `unplaced_message` what it says when the instance
    was not placed yet (default: `message`). Idempotent: returns None when it was already
    stopping or ended."""
    moved = instance_transition(
        instance_id=instance.pk,
        to_state=S.STOPPING,
        message=message,
        expected_from=[S.SCHEDULED, S.PROVISIONING, S.RUNNING],
        source=source,
    )
    if moved is None:
        # Not on a node yet (queued, or requested with its capacity held): nothing runs, so it is
        # stopped at once and what it holds goes back (the provision task then skips it).
        moved = instance_transition(
            instance_id=instance.pk,
            to_state=S.STOPPED,
            message=unplaced_message or message,
            expected_from=[S.QUEUED, S.REQUESTED],
            source=source,
        )
        if moved is not None:
            instance_capacity_release(instance=moved)
    return moved
