"""Where GPU capacity is free: counts for the storefront and the operators' pages. The allocator's
ranked candidates follow the same rules, read inside PostgreSQL by `capacity_place()` (migration
0003; see services/allocations.py).

All of it reads without locks, so it can be stale by the time it is used: the storefront's numbers
are a snapshot, and the allocator claims a candidate with a compare-and-set that re-checks it.

A GPU is *eligible* for new work when its node is READY in the region and its health is "ok".
Capacity is counted in thousandths of a GPU (`Gpu.allocated_milli`), the unit the database checks.
Queries are a fixed number per call (aggregated in SQL), whatever the number of nodes.

Whole GPUs are counted from `NodeCapacity` (free whole GPUs per node, kept by triggers) instead of
aggregating every GPU; fractions read the few partly held GPUs of the nodes it says have some;
MIG devices start from the MIG GPUs.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

from django.db import connection, models

from apps.catalog.models import Flavor, Region, SliceKind

from ..models import WHOLE_GPU_MILLI, AllocationSlice, Gpu, MigDevice, Node, NodeCapacity, NodeState

MIG_COMPUTE_SLICES = 7  # an A100/H100/H200 splits into 7 compute slices; "3g.40gb" holds 3 of them
_MIG_SLICES = re.compile(r"^([1-7])g\.")


class PlacementStrategy(models.TextChoices):
    # Best-fit packs work onto partly used nodes and GPUs so that whole nodes stay free for big
    # requests. First-fit (the first node by hostname that fits) is kept as the benchmark baseline.
    BEST_FIT = "best_fit", "Best fit"
    FIRST_FIT = "first_fit", "First fit"


def mig_profile_milli(profile: str) -> int:
    """Thousandths of a GPU a MIG profile stands for: 1000·g/7 rounded down ("3g.40gb" → 428).

    Rounding down keeps any valid MIG layout (at most 7 compute slices) within 1000 per GPU.
    """
    match = _MIG_SLICES.match(profile or "")
    if not match:
        raise ValueError(f"not a MIG profile: {profile!r}")
    return WHOLE_GPU_MILLI * int(match.group(1)) // MIG_COMPUTE_SLICES


def flavor_slice_milli(flavor: Flavor) -> int | None:
    """Thousandths of one GPU each slice of `flavor` holds; None for a flavor without GPUs."""
    if not flavor.gpu_model_id or flavor.gpu_count < 1:
        return None
    if flavor.slice_kind == SliceKind.WHOLE:
        return WHOLE_GPU_MILLI
    if flavor.slice_kind == SliceKind.FRACTION and flavor.gpu_fraction:
        share = int(flavor.gpu_fraction * WHOLE_GPU_MILLI)
        return share if 0 < share < WHOLE_GPU_MILLI else None
    if flavor.slice_kind == SliceKind.MIG:
        try:
            return mig_profile_milli(flavor.mig_profile)
        except ValueError:
            return None
    return None


def _tables() -> dict[str, str]:
    return {
        "gpu": Gpu._meta.db_table,
        "node": Node._meta.db_table,
        "mig": MigDevice._meta.db_table,
        "slice": AllocationSlice._meta.db_table,
        "summary": NodeCapacity._meta.db_table,
    }


# A node waiting for its last bare-metal tenant's wipe is placed nothing (capacity_place v2), so
# it offers nothing either.
_READY = f"n.state = '{NodeState.READY.value}' AND n.wipe_pending_instance IS NULL"
# Nodes with free whole GPUs of a model, from the summary (nodecapacity_rank_idx): `c` is the
# summary row, `n` its node, which must be READY (the state is read here, not copied: see
# NodeCapacity) and in the region (copied, but the node's own word is the one that counts).
_NODES_WITH_FREE_GPUS = f"""
    {{summary}} c JOIN {{node}} n ON n.id = c.node_id
    WHERE c.region_id = %(region)s AND c.gpu_model_id = ANY(%(models)s) AND c.free_whole_gpus > 0
      AND n.region_id = %(region)s AND {_READY}
"""
# GPUs partly held (0 < held < 1000, healthy, not MIG), through the nodes the summary says have
# some (nodecapacity_partly_idx): no index covers allocated_milli (see Gpu).
_PARTLY_HELD_GPUS = f"""
    {{summary}} c JOIN {{node}} n ON n.id = c.node_id JOIN {{gpu}} g ON g.node_id = c.node_id
    WHERE c.region_id = %(region)s AND c.gpu_model_id = ANY(%(models)s) AND c.partly_held_gpus > 0
      AND n.region_id = %(region)s AND {_READY}
      AND g.gpu_model_id = c.gpu_model_id AND g.health = 'ok' AND NOT g.mig_enabled
      AND g.allocated_milli > 0 AND g.allocated_milli < {WHOLE_GPU_MILLI}
"""
# The same two, for every GPU model of the region (region_free_milli): the same indexes, led by region.
_REGION_NODES_WITH_FREE_GPUS = f"""
    {{summary}} c JOIN {{node}} n ON n.id = c.node_id
    WHERE c.region_id = %(region)s AND c.free_whole_gpus > 0 AND n.region_id = %(region)s AND {_READY}
"""
_REGION_PARTLY_HELD_GPUS = f"""
    {{summary}} c JOIN {{node}} n ON n.id = c.node_id JOIN {{gpu}} g ON g.node_id = c.node_id
    WHERE c.region_id = %(region)s AND c.partly_held_gpus > 0 AND n.region_id = %(region)s AND {_READY}
      AND g.gpu_model_id = c.gpu_model_id AND g.health = 'ok' AND NOT g.mig_enabled
      AND g.allocated_milli > 0 AND g.allocated_milli < {WHOLE_GPU_MILLI}
"""
# Present, unheld MIG devices of a profile on eligible MIG GPUs, from the MIG GPUs (gpu_mig_enabled_idx).
_FREE_MIG_DEVICES = f"""
    {{gpu}} g JOIN {{node}} n ON n.id = g.node_id JOIN {{mig}} d ON d.gpu_id = g.id
    WHERE g.mig_enabled AND g.gpu_model_id = ANY(%(models)s) AND g.health = 'ok'
      AND n.region_id = %(region)s AND {_READY}
      AND d.present AND d.profile = ANY(%(profiles)s)
      AND g.allocated_milli + {{mig_milli}} <= {WHOLE_GPU_MILLI}
      AND NOT EXISTS (SELECT 1 FROM {{slice}} s WHERE s.mig_device_id = d.id AND s.live)
"""


# The database's own spelling of mig_profile_milli(), so both sides agree on every profile.
_MIG_MILLI_SQL = f"(substring(d.profile from '^([1-7])g\\.')::int * {WHOLE_GPU_MILLI} / {MIG_COMPUTE_SLICES})"


def _fetch(sql: str, params: dict) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql.format(**_tables(), mig_milli=_MIG_MILLI_SQL), params)
        return cursor.fetchall()


# --- the storefront and the operators' pages ---------------------------------------------------


def flavor_availability(*, flavors: Iterable[Flavor], region: Region) -> dict[int, int]:
    """How many more of each flavor could be placed in `region` right now, each counted alone.

    Whole: per READY node ⌊free whole GPUs / n⌋ (a request never spans nodes); MIG: free present
    devices of the profile; fraction: per GPU ⌊(1000 − held) / share⌋. Flavors without GPUs (token
    endpoints) are left out. Quotas are not applied: this is capacity, not what a tenant may take.
    """
    whole, fraction, mig = [], [], []
    for flavor in flavors:
        milli = flavor_slice_milli(flavor)
        if milli is None:
            continue
        {SliceKind.WHOLE: whole, SliceKind.FRACTION: fraction, SliceKind.MIG: mig}[flavor.slice_kind].append(
            (flavor, milli)
        )
    result: dict[int, int] = {}
    if whole:
        # model → [(free whole GPUs on a node, how many nodes have that many)]
        free_nodes: dict[int, list[tuple[int, int]]] = defaultdict(list)
        rows = _fetch(
            f"SELECT c.gpu_model_id, c.free_whole_gpus, count(*) FROM {_NODES_WITH_FREE_GPUS} GROUP BY 1, 2",
            {"region": region.pk, "models": sorted({f.gpu_model_id for f, _ in whole})},
        )
        for model_id, free, nodes in rows:
            free_nodes[model_id].append((free, nodes))
        for flavor, _ in whole:
            result[flavor.pk] = sum(
                (free // flavor.gpu_count) * nodes for free, nodes in free_nodes[flavor.gpu_model_id]
            )
    if fraction:
        held: dict[int, list[tuple[int, int]]] = defaultdict(list)  # model → [(held milli, GPUs)]
        # Room on a GPU is either a whole free one (counted in the summary) or what a partly
        # held one has left; GPUs held whole have none.
        rows = _fetch(
            f"SELECT c.gpu_model_id, 0, sum(c.free_whole_gpus) FROM {_NODES_WITH_FREE_GPUS} GROUP BY 1 "
            f"UNION ALL SELECT g.gpu_model_id, g.allocated_milli, count(*) FROM {_PARTLY_HELD_GPUS} GROUP BY 1, 2",
            {"region": region.pk, "models": sorted({f.gpu_model_id for f, _ in fraction})},
        )
        for model_id, milli, gpus in rows:
            held[model_id].append((milli, int(gpus)))
        for flavor, share in fraction:
            result[flavor.pk] = sum(
                ((WHOLE_GPU_MILLI - milli) // share) * gpus for milli, gpus in held[flavor.gpu_model_id]
            )
    if mig:
        rows = _fetch(
            f"SELECT g.gpu_model_id, d.profile, count(*) FROM {_FREE_MIG_DEVICES} GROUP BY 1, 2",
            {
                "region": region.pk,
                "models": sorted({f.gpu_model_id for f, _ in mig}),
                "profiles": sorted({f.mig_profile for f, _ in mig}),
            },
        )
        free_devices = {(model_id, profile): count for model_id, profile, count in rows}
        for flavor, _ in mig:
            result[flavor.pk] = free_devices.get((flavor.gpu_model_id, flavor.mig_profile), 0)
    return result


def region_free_milli(*, region: Region) -> int:
    """Thousandths of a GPU free for new work in the region (READY nodes, healthy GPUs, any model):
    Σ (1000 − held) over those GPUs, in one statement, so one snapshot.

    From `NodeCapacity` wherever it knows the answer, from GPU rows only where it cannot: a free
    whole GPU is 1000 (the summary's count); a GPU held whole is 0 and never read; a partly held
    GPU's room needs its own row (the summary counts it, not what it holds), found through the nodes
    the summary says have some, as fractions are; MIG GPUs (counted by the summary only once held,
    and not by how much) and GPUs of no known model (no summary row at all) are read from their
    rows, through gpu_mig_enabled_idx and the gpu_model index. As exact as the summary, which the
    triggers keep equal to a recount (`services.capacity_summary`).
    """
    rows = _fetch(
        f"""
        SELECT coalesce((SELECT sum(c.free_whole_gpus) FROM {_REGION_NODES_WITH_FREE_GPUS}), 0) * {WHOLE_GPU_MILLI}
             + coalesce((SELECT sum({WHOLE_GPU_MILLI} - g.allocated_milli) FROM {_REGION_PARTLY_HELD_GPUS}), 0)
             + coalesce((SELECT sum({WHOLE_GPU_MILLI} - g.allocated_milli)
                         FROM {{gpu}} g JOIN {{node}} n ON n.id = g.node_id
                         WHERE g.mig_enabled AND g.health = 'ok' AND n.region_id = %(region)s AND {_READY}), 0)
             + coalesce((SELECT sum({WHOLE_GPU_MILLI} - g.allocated_milli)
                         FROM {{gpu}} g JOIN {{node}} n ON n.id = g.node_id
                         WHERE g.gpu_model_id IS NULL AND NOT g.mig_enabled AND g.health = 'ok'
                           AND n.region_id = %(region)s AND {_READY}), 0)
        """,
        {"region": region.pk},
    )
    return int(rows[0][0])


def region_capacity_summary(*, region: Region) -> dict[str, int]:
    """Totals for the operators' pages, in one query.

    `allocated_milli` counts every GPU of the region (capacity held on a down node is still held);
    free whole GPUs and free 8-GPU nodes count only what could take new work now.

    It reads every GPU row of the region, not `NodeCapacity`: the summary counts only healthy GPUs
    and no thousandths, so `gpus` (unhealthy ones too), `gpus_schedulable` (idle MIG GPUs are in no
    count) and `allocated_milli` (held on unhealthy GPUs and down nodes too) need the rows anyway,
    and GPUs of no known model have no summary row, yet count as free whole here.
    """
    rows = _fetch(
        f"""
        WITH per_node AS (
            SELECT n.id, n.state = '{NodeState.READY.value}' AS ready, count(g.id) AS gpus,
                   count(g.id) FILTER (WHERE g.health = 'ok') AS healthy,
                   coalesce(sum(g.allocated_milli), 0) AS milli,
                   count(g.id) FILTER (WHERE g.health = 'ok' AND g.allocated_milli = 0 AND NOT g.mig_enabled) AS free
            FROM {{node}} n LEFT JOIN {{gpu}} g ON g.node_id = n.id
            WHERE n.region_id = %(region)s GROUP BY n.id
        )
        SELECT count(*), count(*) FILTER (WHERE ready), coalesce(sum(gpus), 0),
               coalesce(sum(healthy) FILTER (WHERE ready), 0), coalesce(sum(milli), 0),
               coalesce(sum(free) FILTER (WHERE ready), 0), count(*) FILTER (WHERE ready AND free >= 8)
        FROM per_node
        """,
        {"region": region.pk},
    )
    nodes, ready, gpus, schedulable, milli, free, free_8 = rows[0]
    return {
        "nodes": nodes,
        "nodes_ready": ready,
        "gpus": int(gpus),
        "gpus_schedulable": int(schedulable),
        "allocated_milli": int(milli),
        "free_whole_gpus": int(free),
        "free_8_gpu_nodes": free_8,
    }


# --- the launch form, a refused launch and a queued one ----------------------------------------


def flavors_availability_by_region(
    *, flavors: Iterable[Flavor], regions: Iterable[Region]
) -> dict[int, dict[int, int]]:
    """{region id: {flavor id: how many more could be placed there now}} for GPU flavors: the
    launch form's per-region counts and a refused launch's answer. A fixed few queries per region."""
    flavors = list(flavors)
    return {region.pk: flavor_availability(flavors=flavors, region=region) for region in regions}


def flavor_capacity_total(*, flavor: Flavor, region: Region) -> int:
    """How many of `flavor` the region's READY nodes could hold if nothing were held: the "of 8"
    in "0 of 8 free". Healthy GPUs of the flavor's model only; MIG: present devices of its profile."""
    milli = flavor_slice_milli(flavor)
    if milli is None:
        return 0
    if flavor.slice_kind == SliceKind.MIG:
        return MigDevice.objects.filter(
            gpu__node__region=region,
            gpu__node__state=NodeState.READY,
            gpu__health="ok",
            gpu__gpu_model_id=flavor.gpu_model_id,
            gpu__mig_enabled=True,
            present=True,
            profile=flavor.mig_profile,
        ).count()
    per_node = (
        Gpu.objects.filter(
            node__region=region,
            node__state=NodeState.READY,
            health="ok",
            mig_enabled=False,
            gpu_model_id=flavor.gpu_model_id,
        )
        .values("node_id")
        .annotate(gpus=models.Count("id"))
        .values_list("gpus", flat=True)
    )
    if flavor.slice_kind == SliceKind.WHOLE:
        return sum(gpus // flavor.gpu_count for gpus in per_node)
    return sum(gpus * (WHOLE_GPU_MILLI // milli) for gpus in per_node)
