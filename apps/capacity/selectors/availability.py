"""Where GPU capacity is free: counts for the storefront and the operators' pages, and the ranked
candidates the allocator tries to claim.

All of it reads without locks, so it can be stale by the time it is used: the storefront's numbers
are a snapshot, and the allocator claims a candidate with a compare-and-set that re-checks it.

A GPU is *eligible* for new work when its node is READY in the region and its health is "ok".
Capacity is counted in thousandths of a GPU (`Gpu.allocated_milli`), the unit the database checks.
Queries are a fixed number per call (aggregated in SQL), whatever the number of nodes.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from django.db import connection, models

from apps.catalog.models import Flavor, Region, SliceKind

from ..models import WHOLE_GPU_MILLI, AllocationSlice, Gpu, MigDevice, Node, NodeState

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
    }


def _eligible_sql(model_filter: str) -> str:
    """GPUs that may take new work. No window functions or wide sorts: the allocator runs these
    reads on every placement, so they stay one scan and one hash aggregate at most."""
    return f"""
        SELECT g.id, g.node_id, g.index, g.gpu_model_id, g.allocated_milli, g.mig_enabled, n.hostname
        FROM {{gpu}} g JOIN {{node}} n ON n.id = g.node_id
        WHERE n.region_id = %(region)s AND n.state = '{NodeState.READY.value}' AND g.health = 'ok'
          AND {model_filter}
    """


# The database's own spelling of mig_profile_milli(), so both sides agree on every profile.
_MIG_MILLI_SQL = f"(substring(d.profile from '^([1-7])g\\.')::int * {WHOLE_GPU_MILLI} / {MIG_COMPUTE_SLICES})"


def _fetch(sql: str, params: dict) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql.format(**_tables()), params)
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
            """
            SELECT gpu_model_id, free, count(*) FROM (
                SELECT gpu_model_id, node_id, count(*) AS free FROM ("""
            + _eligible_sql("g.gpu_model_id = ANY(%(models)s)")
            + """) e WHERE allocated_milli = 0 AND NOT mig_enabled GROUP BY gpu_model_id, node_id
            ) per_node GROUP BY gpu_model_id, free
            """,
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
        rows = _fetch(
            "SELECT gpu_model_id, allocated_milli, count(*) FROM ("
            + _eligible_sql("g.gpu_model_id = ANY(%(models)s)")
            + ") e WHERE NOT mig_enabled AND allocated_milli < 1000 GROUP BY gpu_model_id, allocated_milli",
            {"region": region.pk, "models": sorted({f.gpu_model_id for f, _ in fraction})},
        )
        for model_id, milli, gpus in rows:
            held[model_id].append((milli, gpus))
        for flavor, share in fraction:
            result[flavor.pk] = sum(
                ((WHOLE_GPU_MILLI - milli) // share) * gpus for milli, gpus in held[flavor.gpu_model_id]
            )
    if mig:
        rows = _fetch(
            "SELECT e.gpu_model_id, d.profile, count(*) FROM ("
            + _eligible_sql("g.gpu_model_id = ANY(%(models)s)")
            + f""") e JOIN {{mig}} d ON d.gpu_id = e.id
            WHERE e.mig_enabled AND d.present AND d.profile = ANY(%(profiles)s)
              AND e.allocated_milli + {_MIG_MILLI_SQL} <= 1000
              AND NOT EXISTS (SELECT 1 FROM {{slice}} s WHERE s.mig_device_id = d.id AND s.live)
            GROUP BY e.gpu_model_id, d.profile""",
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


def region_capacity_summary(*, region: Region) -> dict[str, int]:
    """Totals for the operators' pages, in one query.

    `allocated_milli` counts every GPU of the region (capacity held on a down node is still held);
    free whole GPUs and free 8-GPU nodes count only what could take new work now.
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


# --- the allocator's candidates ----------------------------------------------------------------


@dataclass(frozen=True)
class NodeCandidate:
    node_id: UUID
    free_gpu_ids: tuple[int, ...]  # free whole GPUs of the node, in index order
    rank: tuple  # nodes with equal ranks are equally good for the strategy (best-fit: free, in use)


def whole_gpu_candidates(
    *, region_id: int, gpu_model_id: int, count: int, strategy: str, limit: int
) -> list[NodeCandidate]:
    """READY nodes with at least `count` free whole GPUs of the model, best first.

    Best-fit: fewest free whole GPUs first (untouched 8-GPU nodes come last), then the node with
    more GPUs in use, then by hostname for a stable order. The GPUs of the chosen few nodes are
    listed through the (node, health, allocated_milli) index, not sorted out of the whole region.
    """
    order = "free ASC, used DESC, hostname, node_id" if strategy == PlacementStrategy.BEST_FIT else "hostname, node_id"
    rows = _fetch(
        f"""
        WITH per_node AS (
            -- One pass over the GPUs (filtered by a hashed list of the region's READY nodes),
            -- aggregated per node before hostnames are joined: the sort sees nodes, not GPUs.
            SELECT node_id, count(*) FILTER (WHERE allocated_milli = 0 AND NOT mig_enabled) AS free,
                   count(*) FILTER (WHERE allocated_milli > 0) AS used
            FROM {{gpu}} WHERE gpu_model_id = %(model)s AND health = 'ok' AND node_id IN (
                SELECT id FROM {{node}} WHERE region_id = %(region)s AND state = '{NodeState.READY.value}')
            GROUP BY node_id
        ), best AS (
            SELECT p.node_id, p.free, p.used, n.hostname FROM per_node p JOIN {{node}} n ON n.id = p.node_id
            WHERE n.region_id = %(region)s AND n.state = '{NodeState.READY.value}' AND p.free >= %(count)s
            ORDER BY {order} LIMIT %(limit)s
        )
        SELECT node_id, free, used, hostname, ARRAY(
            SELECT g.id FROM {{gpu}} g
            WHERE g.node_id = best.node_id AND g.health = 'ok' AND g.allocated_milli = 0
              AND NOT g.mig_enabled AND g.gpu_model_id = %(model)s
            ORDER BY g.index, g.id)
        FROM best ORDER BY {order}
        """,
        {"region": region_id, "model": gpu_model_id, "count": count, "limit": limit},
    )
    best_fit = strategy == PlacementStrategy.BEST_FIT
    return [
        NodeCandidate(node_id=node_id, free_gpu_ids=tuple(ids), rank=(free, -used) if best_fit else (hostname, node_id))
        for node_id, free, used, hostname, ids in rows
        if len(ids) >= count
    ]


def fraction_gpu_candidates(*, region_id: int, gpu_model_id: int, share: int, strategy: str, limit: int) -> list[int]:
    """Ids of non-MIG GPUs with room for `share` thousandths, best first.

    Best-fit: the fullest partly held GPU that still fits (fractions are packed together); when
    none has room, an empty GPU on the node best-fit would pick for one whole GPU, i.e. on the
    busiest node that has one, so that empty nodes stay whole.
    """
    if strategy == PlacementStrategy.FIRST_FIT:
        rows = _fetch(
            f"SELECT id FROM ({_eligible_sql('g.gpu_model_id = %(model)s')}) e "
            "WHERE NOT mig_enabled AND allocated_milli <= %(room)s ORDER BY hostname, index LIMIT %(limit)s",
            {"region": region_id, "model": gpu_model_id, "room": WHOLE_GPU_MILLI - share, "limit": limit},
        )
        return [row[0] for row in rows]
    rows = _fetch(
        f"SELECT id FROM ({_eligible_sql('g.gpu_model_id = %(model)s')}) e "
        "WHERE NOT mig_enabled AND allocated_milli > 0 AND allocated_milli <= %(room)s "
        "ORDER BY allocated_milli DESC, hostname, index LIMIT %(limit)s",
        {"region": region_id, "model": gpu_model_id, "room": WHOLE_GPU_MILLI - share, "limit": limit},
    )
    if rows:
        return [row[0] for row in rows]
    nodes = whole_gpu_candidates(
        region_id=region_id, gpu_model_id=gpu_model_id, count=1, strategy=strategy, limit=limit
    )
    return [gpu for node in nodes for gpu in node.free_gpu_ids][:limit]


def mig_device_candidates(*, region_id: int, gpu_model_id: int, profile: str, strategy: str, limit: int) -> list[int]:
    """Ids of present, unheld MIG devices of `profile` on eligible MIG GPUs, best first.

    Best-fit prefers GPUs, then nodes, already partly used, keeping untouched MIG GPUs free.
    """
    order = (
        "e.allocated_milli DESC, node_milli DESC, e.hostname, e.index, d.uuid"
        if strategy == PlacementStrategy.BEST_FIT
        else "e.hostname, e.index, d.uuid"
    )
    rows = _fetch(
        f"""
        SELECT d.id, (SELECT sum(o.allocated_milli) FROM {{gpu}} o WHERE o.node_id = e.node_id) AS node_milli
        FROM ({_eligible_sql("g.gpu_model_id = %(model)s")}) e JOIN {{mig}} d ON d.gpu_id = e.id
        WHERE e.mig_enabled AND d.present AND d.profile = %(profile)s
          AND e.allocated_milli + {_MIG_MILLI_SQL} <= 1000
          AND NOT EXISTS (SELECT 1 FROM {{slice}} s WHERE s.mig_device_id = d.id AND s.live)
        ORDER BY {order} LIMIT %(limit)s""",
        {"region": region_id, "model": gpu_model_id, "profile": profile, "limit": limit},
    )
    return [row[0] for row in rows]
