"""The launch queue: launches that asked to wait for capacity (QUEUED) are placed when capacity
frees, first come first served per region and flavor.

Two callers: the release of an allocation enqueues a pass once it commits
(services.placement.instance_capacity_release), and the periodic reconcile task runs one as a
backstop (provisioning/tasks.py), for capacity that came back another way (a node back up, an
operator's new node).

Each placement is its own transaction, under an advisory lock of its line (region, flavor), so
two passes never place the same line at once and the head is always tried first. In it the
capacity is taken before the instance row (as services.placement does; see there and
portal/db.py for why that is safe), and a queued instance moves to REQUESTED holding its
allocation; the provision task then hands it to its node.
"""

from __future__ import annotations

from uuid import UUID

from django.core.exceptions import ValidationError
from django.db import connection

from apps.capacity.errors import AllocationRefused, RefusalReason
from portal.db import atomic_retry

from ..models import Instance, InstanceState
from ..policy import launch_eligibility_check
from .actions import instance_provision_on_commit
from .lifecycle import instance_transition
from .placement import LaunchSuperseded, launch_capacity_hold

S = InstanceState
# pg_advisory_xact_lock namespace for "a queue line is being placed" (region id, flavor id).
QUEUE_LINE_LOCK = 0x7175_6575


def queue_line(*, region_id: int, flavor_id: int):
    """The queued instances of one line, first in line first."""
    return Instance.objects.filter(state=S.QUEUED, region_id=region_id, flavor_id=flavor_id).order_by(
        "state_changed_at", "id"
    )


def instances_queue_place() -> list[UUID]:
    """Place whatever waits and now fits, line by line, head first; returns the placed ids.
    A line stops at its first head that finds no capacity (FIFO); a head refused for its own
    organization's reasons (quota, billing) does not hold up the others."""
    placed: list[UUID] = []
    lines = Instance.objects.filter(state=S.QUEUED).values_list("region_id", "flavor_id").distinct().order_by()
    for region_id, flavor_id in list(lines):
        skip: set[UUID] = set()
        while True:
            try:
                outcome, instance_id = _line_head_place(region_id=region_id, flavor_id=flavor_id, skip=frozenset(skip))
            except LaunchSuperseded:
                continue  # the head was stopped while we placed it; nothing was kept
            if outcome == "placed":
                placed.append(instance_id)
            elif outcome == "skip":
                skip.add(instance_id)
            else:  # "empty" or "full"
                break
    return placed


@atomic_retry
def _line_head_place(*, region_id: int, flavor_id: int, skip: frozenset[UUID]) -> tuple[str, UUID | None]:
    with connection.cursor() as cursor:
        # The line's key hashed to the lock's int4: ids multiplied together overflowed it (region
        # 2194 × 1,000,003 > 2^31: "function pg_advisory_xact_lock(integer, bigint) does not
        # exist", and the line was never placed). Two lines sharing a hash only wait for each other.
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [QUEUE_LINE_LOCK, f"{region_id}:{flavor_id}"]
        )
    head = (
        queue_line(region_id=region_id, flavor_id=flavor_id)
        .exclude(pk__in=skip)
        .select_related("offering", "flavor", "region", "organization", "project")
        .first()
    )
    if head is None:
        return "empty", None
    try:
        launch_eligibility_check(organization=head.organization, project=head.project)
    except ValidationError as refused:
        instance_transition(
            instance_id=head.pk,
            to_state=S.FAILED,
            expected_from=[S.QUEUED],
            source="portal",
            message=f"Left the queue: {' '.join(refused.messages)}",
        )
        return "skip", head.pk
    try:
        allocation = launch_capacity_hold(
            holder_id=head.pk,
            organization=head.organization,
            project=head.project,
            flavor=head.flavor,
            region=head.region,
        )
    except AllocationRefused as refused:
        return ("full", None) if refused.reason == RefusalReason.NO_CAPACITY else ("skip", head.pk)
    moved = instance_transition(
        instance_id=head.pk,
        to_state=S.REQUESTED,
        expected_from=[S.QUEUED],
        source="portal",
        message=f"Capacity freed: placed from the queue ({head.flavor.accelerator_label} in {head.region.code})",
        allocation=allocation,
    )
    if moved is None:
        raise LaunchSuperseded  # stopped while we placed it: roll the allocation back
    instance_provision_on_commit(moved.pk)
    return "placed", moved.pk
