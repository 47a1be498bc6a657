"""The allocator: places a flavor's GPU capacity on real GPUs and gives it back.

How a placement stays correct under PostgreSQL's READ COMMITTED, with many web and worker
processes allocating at once:

1. Candidates are read without locks (selectors.availability) and ranked best-fit.
2. One is claimed with a compare-and-set UPDATE that re-checks, on the row's latest version, what
   the read saw (free, healthy, not MIG…): it changes `Gpu.allocated_milli` only if the GPU still
   has room. A whole-GPU request must claim all n GPUs of one node or the attempt's savepoint is
   rolled back. A MIG device is claimed by locking its row, then inserting the live slice whose
   partial unique index makes a second live hold impossible.
3. A lost race (the row changed or is being claimed) re-reads and re-chooses, up to
   MAX_CLAIM_ATTEMPTS; "no_capacity" is answered only when a fresh read finds nothing that fits.

Claims first skip rows other transactions are claiming (SKIP LOCKED), so concurrent requests
spread over the best node's free GPUs instead of queueing on one row; when everything a read
offered is being claimed, the best candidate is tried once more waiting for those holders.
Best-fit is therefore exact for one request at a time and close under concurrency: a fraction
never opens an empty GPU while the read it acts on offered a partly held one, but concurrent
requests that find the partly held ones busy may each open one.

The database is the backstop, not this code: `gpu_allocated_within_one_gpu` keeps every GPU within
0..1000 thousandths and the partial unique indexes on AllocationSlice forbid double holds.
Invariant kept by every write here: a GPU's allocated_milli is the sum of its live slices' milli.
"""

from __future__ import annotations

import random
from itertools import groupby
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from apps.accounts.models import Organization, Project
from apps.catalog.models import Flavor, Region, SliceKind

from ..errors import AllocationRefused, RefusalReason
from ..models import WHOLE_GPU_MILLI, Allocation, AllocationSlice, AllocationState, Gpu, MigDevice, Node, NodeState
from ..selectors.availability import (
    PlacementStrategy,
    flavor_slice_milli,
    fraction_gpu_candidates,
    mig_device_candidates,
    whole_gpu_candidates,
)
from .quotas import guarantee_check, quota_check

MAX_CLAIM_ATTEMPTS = 64
NODE_CANDIDATES = 8  # nodes a whole-GPU read proposes
GPU_CANDIDATES = 32  # GPUs or MIG devices a single-slice read proposes: more than concurrent claimers
# pg_advisory_xact_lock namespace for "a placement is being recorded on node hashtext(id)".
NODE_PLACEMENT_LOCK = 0x6E6F_6465
# Unique violations that mean "someone else holds it", i.e. a lost race, never a bug.
_HOLD_CONSTRAINTS = {"slice_one_live_whole_gpu_hold", "slice_one_live_mig_device_hold"}


class _LostRace(Exception):
    """A claim found its candidate taken; the attempt's savepoint is rolled back."""


def _sql(statement: str) -> str:
    return statement.format(
        gpu=Gpu._meta.db_table, mig=MigDevice._meta.db_table, slice=AllocationSlice._meta.db_table,
        node=Node._meta.db_table, allocation=Allocation._meta.db_table,
    )


@transaction.atomic
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
    if project is not None and project.organization_id != organization.pk:
        raise ValidationError({"project": "That project belongs to another organization."})
    if len(holder) > Allocation._meta.get_field("holder").max_length:
        raise ValidationError({"holder": "The holder reference is too long."})
    if strategy not in PlacementStrategy.values:
        raise ValueError(f"unknown placement strategy {strategy!r}")
    if not region.is_active:
        raise AllocationRefused(RefusalReason.NO_CAPACITY, f"{region.code} is not taking new launches.")
    gpu_milli = milli * flavor.gpu_count
    # Quota rows first (locked until commit), then capacity: a fixed lock order, no deadlocks.
    quota_check(organization=organization, project=project, gpu_milli=gpu_milli, lock=True)
    guarantee_check(organization=organization, region=region, gpu_milli=gpu_milli)
    record = {"organization": organization, "project": project, "flavor": flavor, "holder": holder}
    for _ in range(MAX_CLAIM_ATTEMPTS):
        tries = _candidate_sets(flavor=flavor, region=region, strategy=strategy, milli=milli)
        if not tries:
            raise AllocationRefused(
                RefusalReason.NO_CAPACITY, f"No free {flavor.accelerator_label} in {region.code} right now."
            )
        (best, _), *others = tries
        # When the best is lost, it went to a concurrent request that read the same ranking; the
        # losers spread over the equally good candidates instead of all queueing on the next one.
        for ids in [best, *(ids for ids, _ in _spread_over_ties(others))]:
            allocation = _claim_and_record(ids=ids, flavor=flavor, milli=milli, wait=False, record=record)
            if allocation is not None:
                return allocation
        # Everything this read offered is being claimed by others right now. Wait for them on the
        # best candidate, which may still have room once they commit, before reading again: a
        # wait costs less than re-reading while they finish.
        allocation = _claim_and_record(ids=best, flavor=flavor, milli=milli, wait=True, record=record)
        if allocation is not None:
            return allocation
    raise AllocationRefused(
        RefusalReason.NO_CAPACITY,
        f"{flavor.accelerator_label} in {region.code} is in high demand right now; try again in a moment.",
    )


def _candidate_sets(*, flavor: Flavor, region: Region, strategy: str, milli: int) -> list[tuple[list[int], tuple]]:
    """What to try claiming, best first: each entry is one claim (ids of GPUs or MIG devices) and
    its rank; entries of equal rank are equally good."""
    common = {"region_id": region.pk, "gpu_model_id": flavor.gpu_model_id, "strategy": strategy}
    if flavor.slice_kind == SliceKind.WHOLE:
        nodes = whole_gpu_candidates(count=flavor.gpu_count, limit=NODE_CANDIDATES, **common)
        if flavor.gpu_count == 1 and nodes:
            # Any GPU of the best node is as good as another: one claim over all of them lets
            # concurrent requests take different GPUs of that node instead of colliding.
            return [([gpu for node in nodes for gpu in node.free_gpu_ids][:GPU_CANDIDATES], ())]
        return [(list(node.free_gpu_ids), node.rank) for node in nodes]
    if flavor.slice_kind == SliceKind.FRACTION:
        gpus = fraction_gpu_candidates(share=milli, limit=GPU_CANDIDATES, **common)
        return [(gpus, ())] if gpus else []
    devices = mig_device_candidates(profile=flavor.mig_profile, limit=GPU_CANDIDATES, **common)
    return [(devices, ())] if devices else []


def _spread_over_ties(tries: list[tuple[list[int], tuple]]) -> list[tuple[list[int], tuple]]:
    """The same candidates, still in rank order, but shuffled among those of equal rank."""
    spread = []
    for _, group in groupby(tries, key=lambda entry: entry[1]):
        group = list(group)
        random.shuffle(group)
        spread.extend(group)
    return spread


def _claim_and_record(*, ids: list[int], flavor: Flavor, milli: int, wait: bool, record: dict) -> Allocation | None:
    """One claim in its own savepoint: claim, check the node, write the allocation and its slices.

    Returns None when the race was lost; the savepoint's rollback undoes any partial claim and
    releases its row locks.
    """
    try:
        with transaction.atomic():
            if flavor.slice_kind == SliceKind.MIG:
                claimed = _mig_device_claim(device_ids=ids, milli=milli, wait=wait)
            else:
                claimed = _gpus_claim(gpu_ids=ids, count=flavor.gpu_count, milli=milli, wait=wait)
            if not claimed or len(claimed) < flavor.gpu_count:
                raise _LostRace
            node_ids = {node_id for _, node_id, _ in claimed}
            if len(node_ids) != 1:  # candidate sets never span nodes for n > 1; keep it so
                raise _LostRace
            allocation = _record(node_id=node_ids.pop(), claimed=claimed, milli=milli, **record)
            if allocation is None:  # the node stopped being READY while we claimed
                raise _LostRace
            return allocation
    except _LostRace:
        return None
    except IntegrityError as exc:
        if _constraint_name(exc) in _HOLD_CONSTRAINTS:
            return None
        raise
    except OperationalError as exc:
        # A deadlock is not expected (locks are taken in one order), but if the detector ever
        # picks this claim it is a lost race like any other, not a failed request.
        if getattr(getattr(exc, "__cause__", None), "sqlstate", None) == "40P01":
            return None
        raise


def _constraint_name(exc: IntegrityError) -> str | None:
    diag = getattr(getattr(exc, "__cause__", None), "diag", None)
    return getattr(diag, "constraint_name", None)


def _lock_clause(wait: bool) -> str:
    return "FOR UPDATE" if wait else "FOR UPDATE SKIP LOCKED"


def _gpus_claim(*, gpu_ids: list[int], count: int, milli: int, wait: bool) -> list[tuple]:
    """Add `milli` to up to `count` of `gpu_ids` (in that order of preference) that still have room.

    The first CTE locks the rows and re-checks them on their latest version; the UPDATE repeats
    the conditions so the statement alone is a compare-and-set. (The choice is a CTE, evaluated
    once: as `WHERE id IN (SELECT … LIMIT n FOR UPDATE)` PostgreSQL may re-run the subquery per
    row and claim more than n.) Each claimed row also takes the node's placement lock (see
    allocations_mark_lost).
    """
    conditions = "g.health = 'ok' AND NOT g.mig_enabled AND g.allocated_milli <= %(room)s"
    statement = f"""
        WITH chosen AS (
            SELECT g.id FROM {{gpu}} g WHERE g.id = ANY(%(ids)s) AND {conditions}
            ORDER BY array_position(%(ids)s, g.id) LIMIT %(count)s {_lock_clause(wait)}
        ), claimed AS (
            UPDATE {{gpu}} g SET allocated_milli = g.allocated_milli + %(milli)s FROM chosen
            WHERE g.id = chosen.id AND {conditions}
            RETURNING g.id, g.node_id
        )
        SELECT id, node_id, NULL, pg_advisory_xact_lock_shared(%(lock)s, hashtext(node_id::text)) FROM claimed
    """
    params = {"ids": gpu_ids, "count": count, "milli": milli, "room": WHOLE_GPU_MILLI - milli,
              "lock": NODE_PLACEMENT_LOCK}
    with connection.cursor() as cursor:
        cursor.execute(_sql(statement), params)
        return [row[:3] for row in cursor.fetchall()]


def _mig_device_claim(*, device_ids: list[int], milli: int, wait: bool) -> list[tuple]:
    """Lock the first free device of `device_ids` and add its share to its GPU's allocated_milli.

    "Free" is read from this statement's snapshot: a slice committed a moment ago may be missed,
    and then the slice's unique index refuses the second hold (a lost race, retried).
    """
    statement = f"""
        WITH device AS (
            SELECT d.id, d.gpu_id FROM {{mig}} d
            WHERE d.id = ANY(%(ids)s) AND d.present
              AND NOT EXISTS (SELECT 1 FROM {{slice}} s WHERE s.mig_device_id = d.id AND s.live)
            ORDER BY array_position(%(ids)s, d.id) LIMIT 1 {_lock_clause(wait)}
        ), claimed AS (
            UPDATE {{gpu}} g SET allocated_milli = g.allocated_milli + %(milli)s FROM device
            WHERE g.id = device.gpu_id AND g.health = 'ok' AND g.mig_enabled AND g.allocated_milli <= %(room)s
            RETURNING g.id, g.node_id, device.id AS device_id
        )
        SELECT id, node_id, device_id, pg_advisory_xact_lock_shared(%(lock)s, hashtext(node_id::text))
        FROM claimed
    """
    params = {"ids": device_ids, "milli": milli, "room": WHOLE_GPU_MILLI - milli, "lock": NODE_PLACEMENT_LOCK}
    with connection.cursor() as cursor:
        cursor.execute(_sql(statement), params)
        return [row[:3] for row in cursor.fetchall()]


def _record(
    *, node_id: UUID, claimed: list[tuple], milli: int, organization: Organization, project: Project | None,
    flavor: Flavor, holder: str,
) -> Allocation | None:
    """Write the allocation and its slices, if the node is still READY; None if it is not.

    The READY check is part of this statement, which runs after the claim took the node's
    placement lock: its snapshot sees any state change committed while that lock was awaited.
    SQL rather than the ORM because this is the hot path of every placement (ORM query building
    costs more than PostgreSQL's work here); the model instance is built from the row written.
    """
    given = {
        "organization_id": organization.pk, "project_id": project.pk if project is not None else None,
        "flavor_id": flavor.pk, "node_id": node_id, "state": AllocationState.ACTIVE.value,
        "gpu_milli": milli * len(claimed), "holder": holder, "created_at": timezone.now(), "released_at": None,
    }
    # In the model's field order, which Model.from_db() expects below.
    values = {f.attname: given[f.attname] for f in Allocation._meta.concrete_fields if f.attname != "id"}
    columns = list(values)
    with connection.cursor() as cursor:
        cursor.execute(
            _sql(
                f"""
                WITH allocation AS (
                    INSERT INTO {{allocation}} ({', '.join(columns)})
                    SELECT {', '.join(f'%({c})s' for c in columns)}
                    WHERE EXISTS (SELECT 1 FROM {{node}} WHERE id = %(node_id)s AND state = '{NodeState.READY.value}')
                    RETURNING id
                )
                INSERT INTO {{slice}} (allocation_id, gpu_id, mig_device_id, milli, live)
                SELECT allocation.id, claimed.gpu, claimed.device, %(milli)s, true
                FROM allocation, unnest(%(gpus)s::bigint[], %(devices)s::bigint[]) AS claimed(gpu, device)
                RETURNING allocation_id
                """
            ),
            {**values, "milli": milli, "gpus": [c[0] for c in claimed], "devices": [c[2] for c in claimed]},
        )
        row = cursor.fetchone()
    if row is None:
        return None
    allocation = Allocation.from_db(connection.alias, ["id", *columns], [row[0], *values.values()])
    allocation.organization, allocation.flavor = organization, flavor
    if project is not None:
        allocation.project = project
    return allocation


# --- giving capacity back ----------------------------------------------------------------------


@transaction.atomic
def allocation_release(*, allocation_id: int) -> Allocation:
    """Give an allocation's capacity back. Releasing a released allocation changes nothing."""
    _release(condition="id = %(id)s AND state IN ('active', 'lost')", params={"id": allocation_id})
    return Allocation.objects.get(pk=allocation_id)


@transaction.atomic
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


@transaction.atomic
def allocations_release_lost(*, node_id: UUID) -> int:
    """The node is back: what was lost on it is released (its workloads did not survive)."""
    return _release(condition="node_id = %(node)s AND state = 'lost'", params={"node": node_id})


def _release(*, condition: str, params: dict) -> int:
    """Compare-and-set live allocations to RELEASED, end their slices and give their thousandths
    back to the GPUs, all in the caller's transaction. Returns how many allocations it released."""
    with connection.cursor() as cursor:
        cursor.execute(
            _sql(f"UPDATE {{allocation}} SET state = 'released', released_at = %(now)s WHERE {condition} RETURNING id"),
            {**params, "now": timezone.now()},
        )
        released = [row[0] for row in cursor.fetchall()]
        if not released:
            return 0
        # One statement for all GPUs. Two writers never wait on each other's GPU rows in
        # opposite orders here: a whole allocation's GPUs are its own, and the node's lost
        # allocations are released inside its state transition, one transition at a time.
        cursor.execute(
            _sql("""
            WITH freed AS (
                UPDATE {slice} SET live = false WHERE allocation_id = ANY(%(ids)s) AND live
                RETURNING gpu_id, milli
            ), per_gpu AS (
                SELECT gpu_id, sum(milli) AS milli FROM freed GROUP BY gpu_id
            )
            UPDATE {gpu} g SET allocated_milli = g.allocated_milli - per_gpu.milli
            FROM per_gpu WHERE g.id = per_gpu.gpu_id
            """),
            {"ids": released},
        )
    return len(released)
