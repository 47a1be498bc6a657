"""The allocator: places a flavor's GPU capacity on real GPUs and gives it back.

How a placement stays correct under PostgreSQL's READ COMMITTED, with many web and worker
processes allocating at once:

1. Candidates are read without locks and ranked best-fit: whole GPUs from `NodeCapacity`, the
   per-node summary kept by triggers, through its index (never by aggregating every GPU);
   fractions from the partly held GPUs of the nodes it lists as having some; MIG devices from the
   MIG GPUs.
2. One is claimed with a compare-and-set UPDATE that re-checks, on the row's latest version, what
   the read saw (free, healthy, not MIG…): it changes `Gpu.allocated_milli` only if the GPU still
   has room. A whole-GPU request must claim all n GPUs of one node. A MIG device is claimed by
   locking its row, then checking for a live hold in a new snapshot. Each try runs in a
   subtransaction that is rolled back unless it places.
3. The claim takes the node's placement lock (shared; allocations_mark_lost takes it exclusively),
   then records the allocation and its slices only if the node is still READY, in a new statement
   whose snapshot sees a state change committed while that lock was awaited.
4. A lost race (the row changed or is being claimed, or the node left READY) tries the next
   candidate, then reads again, up to MAX_CLAIM_ATTEMPTS reads; "no_capacity" is answered only
   when a fresh read finds nothing that fits.

Steps 1–4 run inside PostgreSQL, in `capacity_place()` (migration 0003, where the ranking rules
are spelled out): one round trip however many races are lost, with its plans cached for the
session instead of planned per statement (planning the candidate read cost more than running it).
A placement is 5 round trips: BEGIN, quota, guarantee, place, COMMIT.

Claims first skip rows other transactions are claiming (SKIP LOCKED), so concurrent requests
spread over the best node's free GPUs instead of queueing on one row; when everything a read
offered is being claimed, the best candidate is tried once more waiting for those holders.
Best-fit is therefore exact for one request at a time and close under concurrency: a fraction
never opens an empty GPU while the read it acts on offered a partly held one, but concurrent
requests that find the partly held ones busy may each open one.

Gang placement (allocation_gang_create: more whole GPUs than one node has, or whole nodes) runs
the same way in `capacity_place_gang()` (migration 0008): a plan over several nodes is claimed in
one subtransaction, every member or none, and recorded as one allocation per node sharing a
`gang_id`.

The database is the backstop, not this code: `gpu_allocated_within_one_gpu` keeps every GPU within
0..1000 thousandths and the partial unique indexes on AllocationSlice forbid double holds. The
summary only ranks: a wrong summary row can cost a lost claim, never a double booking.
Invariant kept by every write here: a GPU's allocated_milli is the sum of its live slices' milli.
Locks are taken in one order: quota rows, GPU rows, the node's placement lock, summary rows; a
release locks its allocation, then its GPUs in (node, index, id) order, then summary rows (the
whole order, with instances and billing, is in portal/db.py). What still loses a deadlock (a
locking read keeps the rows it found taken) is retried whole by `atomic_retry`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from apps.accounts.models import Organization, Project
from apps.catalog.models import Flavor, Region, SliceKind
from portal.db import atomic_retry

from ..errors import AllocationRefused, RefusalReason
from ..models import LIVE_ALLOCATION_STATES, WHOLE_GPU_MILLI, Allocation, AllocationState, NodeCapacity
from ..selectors.availability import PlacementStrategy, flavor_slice_milli
from .quotas import guarantee_check, quota_check

MAX_CLAIM_ATTEMPTS = 64  # reads of candidates per placement, all lost races included
NODE_CANDIDATES = 8  # nodes a whole-GPU read proposes
GPU_CANDIDATES = 32  # GPUs or MIG devices a single-slice read proposes: more than concurrent claimers
# pg_advisory_xact_lock namespace for "a placement is being recorded on node hashtext(id)". Also
# spelled out in capacity_place() (migration 0003): change both or neither.
NODE_PLACEMENT_LOCK = 0x6E6F_6465


def _request_check(*, organization, region, project, holder: str, strategy: str) -> None:
    """What every placement request must satisfy before any lock is taken."""
    if project is not None and project.organization_id != organization.pk:
        raise ValidationError({"project": "That project belongs to another organization."})
    if len(holder) > Allocation._meta.get_field("holder").max_length:
        raise ValidationError({"holder": "The holder reference is too long."})
    if strategy not in PlacementStrategy.values:
        raise ValueError(f"unknown placement strategy {strategy!r}")
    if not region.is_active:
        raise AllocationRefused(RefusalReason.NO_CAPACITY, f"{region.code} is not taking new launches.")


@atomic_retry
def allocation_create(
    *,
    organization: Organization,
    flavor: Flavor,
    region: Region,
    project: Project | None = None,
    holder: str = "",
    strategy: str = PlacementStrategy.BEST_FIT,
) -> Allocation:
    """Hold GPU capacity for one `flavor` in `region`, or raise AllocationRefused (nothing held)."""
    milli = flavor_slice_milli(flavor)
    if milli is None:
        raise AllocationRefused(
            RefusalReason.FLAVOR_NOT_ALLOCATABLE, f"{flavor.name} has no GPU capacity to allocate."
        )
    _request_check(organization=organization, region=region, project=project, holder=holder, strategy=strategy)
    gpu_milli = milli * flavor.gpu_count
    # Quota rows first (locked until commit), then capacity: a fixed lock order, no deadlocks.
    quota_check(organization=organization, project=project, gpu_milli=gpu_milli, lock=True)
    guarantee_check(organization=organization, region=region, gpu_milli=gpu_milli)
    record = {
        "organization": organization, "project": project, "flavor": flavor, "holder": holder,
        "created_at": timezone.now(),
    }
    status, allocation_id, node_id = _place(region=region, strategy=strategy, milli=milli, **record)
    if status == "no_capacity":
        raise AllocationRefused(
            RefusalReason.NO_CAPACITY, f"No free {flavor.accelerator_label} in {region.code} right now."
        )
    if status != "placed":
        raise AllocationRefused(
            RefusalReason.NO_CAPACITY,
            f"{flavor.accelerator_label} in {region.code} is in high demand right now; try again in a moment.",
        )
    return _record(allocation_id=allocation_id, node_id=node_id, gpu_milli=gpu_milli, **record)


def _place(
    *, region: Region, strategy: str, milli: int, organization: Organization, project: Project | None,
    flavor: Flavor, holder: str, created_at: datetime,
) -> tuple[str, int | None, UUID | None]:
    """Read candidates, claim the best that is still free and record the allocation, in one call
    (capacity_place(), see the module doc). Returns (status, allocation id, node id); status is
    "placed", "no_capacity" or "busy" (every read lost all its races)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT * FROM capacity_place(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                region.pk, flavor.gpu_model_id, flavor.slice_kind, flavor.gpu_count, milli, flavor.mig_profile,
                strategy == PlacementStrategy.BEST_FIT, MAX_CLAIM_ATTEMPTS, NODE_CANDIDATES, GPU_CANDIDATES,
                organization.pk, project.pk if project is not None else None, flavor.pk, holder, created_at,
            ],
        )
        return cursor.fetchone()


def _record(
    *, allocation_id: int, node_id: UUID, gpu_milli: int, organization: Organization, project: Project | None,
    flavor: Flavor, holder: str, created_at: datetime,
) -> Allocation:
    """The allocation capacity_place() wrote, as a model instance built from the values written.

    Runs between the placement and its commit, while the node's placement lock is held: tests
    pause a placement here to race it against its node going down.
    """
    given = {
        "id": allocation_id, "organization_id": organization.pk,
        "project_id": project.pk if project is not None else None, "flavor_id": flavor.pk, "node_id": node_id,
        "state": AllocationState.ACTIVE.value, "gpu_milli": gpu_milli, "holder": holder, "created_at": created_at,
        "released_at": None,
    }
    # In the model's field order, which Model.from_db() expects.
    values = {f.attname: given[f.attname] for f in Allocation._meta.concrete_fields if f.attname in given}
    allocation = Allocation.from_db(connection.alias, list(values), list(values.values()))
    allocation.organization, allocation.flavor = organization, flavor
    if project is not None:
        allocation.project = project
    return allocation


# --- gang placement: whole GPUs over several nodes, or whole nodes, all or nothing ---------------


@dataclass(frozen=True)
class Gang:
    """A gang placement: one allocation per member node (node order), all with `gang_id`."""

    gang_id: UUID
    allocations: list[Allocation]

    @property
    def gpu_milli(self) -> int:
        return sum(a.gpu_milli for a in self.allocations)


@atomic_retry
def allocation_gang_create(
    *,
    organization: Organization,
    flavor: Flavor,
    region: Region,
    gpus: int | None = None,
    whole_nodes: int | None = None,
    node_gpus: int | None = None,
    project: Project | None = None,
    holder: str = "",
    strategy: str = PlacementStrategy.BEST_FIT,
) -> Gang:
    """Hold `gpus` whole GPUs of the flavor's GPU model in `region` over as few nodes as they need
    (default: the flavor's gpu_count), or `whole_nodes` whole nodes (every GPU of each free and
    healthy, the node READY), all or nothing: every member is held, or AllocationRefused is raised
    and nothing is. Placement and packing policy: capacity_place_gang() (its SQL file's header).

    One allocation per member node rather than one allocation with slices on several nodes: an
    allocation's `node` is what a node going down marks lost (allocations_mark_lost) and what
    operators and agents read per node; a gang keeps that, and `gang_id` ties its members together
    (allocation_gang_release gives all of them back; allocation_release gives back one member, as
    a cluster shrinking by one worker would).

    `node_gpus` (whole nodes only): take only nodes of exactly that many GPUs (bare metal: the
    flavor's size). Whole nodes are never ones waiting for a tenant's wipe or whose last stored
    health check failed (capacity_place_gang v2).
    """
    if flavor.gpu_model_id is None or flavor.slice_kind != SliceKind.WHOLE:
        raise AllocationRefused(
            RefusalReason.FLAVOR_NOT_ALLOCATABLE, f"{flavor.name} is not whole GPUs; a gang holds whole GPUs."
        )
    if whole_nodes is None and gpus is None:
        gpus = flavor.gpu_count
    if (whole_nodes is None) == (gpus is None):
        raise ValidationError("Ask for a number of GPUs or a number of whole nodes, not both.")
    if node_gpus is not None and (whole_nodes is None or not isinstance(node_gpus, int) or node_gpus < 1):
        raise ValidationError({"node_gpus": "A node size goes with whole nodes, and is at least 1 GPU."})
    count = gpus if gpus is not None else whole_nodes
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValidationError({"gpus" if gpus is not None else "whole_nodes": "Ask for at least 1."})
    _request_check(organization=organization, region=region, project=project, holder=holder, strategy=strategy)
    # Quota rows first (locked until commit), then capacity, as allocation_create does. Whole nodes
    # are counted once placed (their size is known only then): the rows are locked now and the
    # ceiling checked after the placement, inside this transaction, which a refusal rolls back.
    if gpus is not None:
        gpu_milli = gpus * WHOLE_GPU_MILLI
        quota_check(organization=organization, project=project, gpu_milli=gpu_milli, lock=True)
    else:
        quota_check(organization=organization, project=project, gpu_milli=0, lock=True)
        largest = (
            NodeCapacity.objects.filter(region=region, gpu_model_id=flavor.gpu_model_id)
            .order_by("-free_whole_gpus").values_list("free_whole_gpus", flat=True).first()
        ) or 0
        gpu_milli = whole_nodes * largest * WHOLE_GPU_MILLI  # at most this much
    guarantee_check(organization=organization, region=region, gpu_milli=gpu_milli)
    gang_id = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT * FROM capacity_place_gang(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                region.pk, flavor.gpu_model_id, gpus or 0, whole_nodes or 0,
                strategy == PlacementStrategy.BEST_FIT, MAX_CLAIM_ATTEMPTS, organization.pk,
                project.pk if project is not None else None, flavor.pk, holder, gang_id, timezone.now(),
                node_gpus or 0,
            ],
        )
        status, allocation_ids, _nodes = cursor.fetchone()
    model = flavor.gpu_model.name
    size = f"{node_gpus}-GPU " if node_gpus else ""
    what = f"{gpus} {model} GPUs" if gpus is not None else f"{whole_nodes} whole {size}{model} node(s)"
    if status == "no_capacity":
        raise AllocationRefused(
            RefusalReason.NO_CAPACITY, f"Not enough free capacity for {what} in {region.code} right now."
        )
    if status != "placed":
        raise AllocationRefused(
            RefusalReason.NO_CAPACITY, f"{what} in {region.code} are in high demand right now; try again in a moment."
        )
    if whole_nodes is not None:
        quota_check(organization=organization, project=project, gpu_milli=0)  # usage now counts the gang
    allocations = list(Allocation.objects.filter(pk__in=allocation_ids).order_by("node_id"))
    return Gang(gang_id=gang_id, allocations=allocations)


@atomic_retry
def allocation_gang_release(*, gang_id: UUID) -> int:
    """Give back every live member of a gang; returns how many were live. Releasing a released gang
    changes nothing. Lock order (portal/db.py): the members' allocation rows, in id order, then
    their GPUs (capacity_allocations_give_back)."""
    live = Allocation.objects.filter(gang_id=gang_id, state__in=LIVE_ALLOCATION_STATES)
    ids = list(live.select_for_update(no_key=True).order_by("id").values_list("id", flat=True))
    if not ids:
        return 0
    Allocation.objects.filter(pk__in=ids).update(state=AllocationState.RELEASED, released_at=timezone.now())
    with connection.cursor() as cursor:
        cursor.execute("SELECT capacity_allocations_give_back(%s::bigint[])", [ids])
    return len(ids)


# --- giving capacity back ----------------------------------------------------------------------


@atomic_retry
def allocation_release(*, allocation_id: int) -> Allocation:
    """Give an allocation's capacity back. Releasing a released allocation changes nothing.

    One call: compare-and-set the allocation to RELEASED, end its slices, give its thousandths back
    to the GPUs, and read the allocation as it is afterwards (capacity_allocation_release()).
    """
    fields = Allocation._meta.concrete_fields
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(f.column for f in fields)} FROM capacity_allocation_release(%s, %s)",
            [allocation_id, timezone.now()],
        )
        row = cursor.fetchone()
    if row is None:
        raise Allocation.DoesNotExist(f"Allocation {allocation_id} does not exist.")
    return Allocation.from_db(connection.alias, [f.attname for f in fields], row)


@atomic_retry
def allocations_mark_lost(*, node_id: UUID) -> int:
    """The node went down: its active allocations become LOST. Their capacity stays held (the
    workloads may still run) until the node is back and allocations_release_lost runs.

    The node's placement lock is taken first, exclusively: it waits for placements being recorded
    on this node right now to commit, so that none of them escapes being marked; placements
    starting after it see the node's new state once this transaction commits.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s::uuid::text))", [NODE_PLACEMENT_LOCK, str(node_id)]
        )
    return Allocation.objects.filter(node_id=node_id, state=AllocationState.ACTIVE).update(state=AllocationState.LOST)


@atomic_retry
def allocations_release_lost(*, node_id: UUID) -> int:
    """The node is back: what was lost on it is released (its workloads did not survive)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT capacity_allocations_release_lost(%s, %s)", [node_id, timezone.now()])
        return cursor.fetchone()[0]
