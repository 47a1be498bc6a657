"""NodeCapacity, the per-node summary the allocator ranks candidates from: recount and repair.

Triggers (migration 0002) and the allocator's own statements (migration 0003) change the summary in
the same statement as every write to a GPU row, so a recount should always agree with it. The
repair is for what they cannot see: rows edited by hand, one table restored without the other,
triggers disabled for a bulk load (session_replication_role = replica), or a bug. A wrong row
never double-books (claims re-check the GPU rows); it only makes the allocator rank badly, or miss
or lose a candidate, until repaired.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from django.db import connection, transaction

from ..models import Gpu, Node, NodeCapacity

logger = logging.getLogger(__name__)

# Per (node, GPU model), among healthy GPUs: free whole (not MIG, not held), in use (held at all),
# partly held (not MIG, 0 < held < 1000); with the node's region and hostname. The triggers'
# definitions; `{where}` narrows it to some nodes.
_RECOUNT = """
    SELECT g.node_id, g.gpu_model_id, n.region_id, n.hostname,
           count(*) FILTER (WHERE g.health = 'ok' AND g.allocated_milli = 0 AND NOT g.mig_enabled) AS free,
           count(*) FILTER (WHERE g.health = 'ok' AND g.allocated_milli > 0) AS used,
           count(*) FILTER (WHERE g.health = 'ok' AND g.allocated_milli > 0 AND g.allocated_milli < 1000
                            AND NOT g.mig_enabled) AS partly
    FROM {gpu} g JOIN {node} n ON n.id = g.node_id
    WHERE g.gpu_model_id IS NOT NULL {where}
    GROUP BY g.node_id, g.gpu_model_id, n.region_id, n.hostname
"""


@dataclass(frozen=True)
class SummaryDrift:
    """One summary row that differs from a recount. Counts are (free whole, in use, partly held)."""

    node_id: UUID
    gpu_model_id: int
    stored: tuple[int, int, int, int, str] | None  # counts, region, hostname as summarised; None: no row
    actual: tuple[int, int, int, int | None, str | None]  # recounted; region None: the node has no such GPU


def _sql(statement: str, where: str = "") -> str:
    tables = {"gpu": Gpu._meta.db_table, "node": Node._meta.db_table, "summary": NodeCapacity._meta.db_table}
    return statement.format(**tables, recount=_RECOUNT.format(**tables, where=where))


def node_capacity_drift(*, node_ids: Iterable[UUID] | None = None) -> list[SummaryDrift]:
    """Summary rows that differ from a recount of the GPU rows (of `node_ids`, or of all nodes).

    One statement, so one snapshot of both tables: a claim commits its GPU rows and its summary row
    together, hence concurrent placements never show up here as drift. A row whose node has no
    GPU of its model any more counts as drift only while it claims some capacity.
    """
    nodes = list(node_ids) if node_ids is not None else None
    where = "AND g.node_id = ANY(%(nodes)s)" if nodes is not None else ""
    stored_filter = "WHERE s.node_id = ANY(%(nodes)s)" if nodes is not None else ""
    statement = f"""
        WITH actual AS ({{recount}}),
        stored AS (SELECT * FROM {{summary}} s {stored_filter})
        SELECT coalesce(a.node_id, s.node_id), coalesce(a.gpu_model_id, s.gpu_model_id), s.node_id IS NOT NULL,
               s.free_whole_gpus, s.gpus_in_use, s.partly_held_gpus, s.region_id, s.hostname,
               coalesce(a.free, 0), coalesce(a.used, 0), coalesce(a.partly, 0), a.region_id, a.hostname
        FROM actual a FULL JOIN stored s ON s.node_id = a.node_id AND s.gpu_model_id = a.gpu_model_id
        WHERE s.node_id IS NULL
           OR (a.node_id IS NULL AND (s.free_whole_gpus, s.gpus_in_use, s.partly_held_gpus) <> (0, 0, 0))
           OR (a.node_id IS NOT NULL
               AND (s.free_whole_gpus, s.gpus_in_use, s.partly_held_gpus, s.region_id, s.hostname)
                   <> (a.free, a.used, a.partly, a.region_id, a.hostname))
        ORDER BY 1, 2
    """
    with connection.cursor() as cursor:
        cursor.execute(_sql(statement, where), {"nodes": nodes})
        rows = cursor.fetchall()
    return [
        SummaryDrift(node_id=row[0], gpu_model_id=row[1], stored=tuple(row[3:8]) if row[2] else None,
                     actual=tuple(row[8:13]))
        for row in rows
    ]


@transaction.atomic
def node_capacity_repair(*, node_ids: Iterable[UUID] | None = None) -> int:
    """Make the summary of the drifted nodes (among `node_ids`, or all) equal a recount.

    Returns how many summary rows it wrote or removed. Drift is found without locks; only those
    nodes are then recounted under locks, taken in the order every writer takes them (node row,
    GPU rows, summary rows): with the node row and its GPU rows share-locked, nothing can change
    the recount between it and the write, and a claim on those GPUs waits for this commit.
    """
    drifts = node_capacity_drift(node_ids=node_ids)
    if not drifts:
        return 0
    drifted = sorted({drift.node_id for drift in drifts})
    # Something wrote GPU or summary rows behind the triggers' back: worth an operator's look.
    logger.warning("capacity summary drifted on %d node(s), repairing: %s", len(drifted), drifts[:10])
    with connection.cursor() as cursor:
        # FOR SHARE on the node, not KEY SHARE: new GPUs of a node are inserted by its inventory
        # report, which updates the node row first, so this also keeps new GPU rows out.
        cursor.execute(
            _sql("SELECT 1 FROM {node} WHERE id = ANY(%(nodes)s) ORDER BY id FOR SHARE"), {"nodes": drifted}
        )
        cursor.execute(
            _sql("SELECT 1 FROM {gpu} WHERE node_id = ANY(%(nodes)s) ORDER BY id FOR SHARE"), {"nodes": drifted}
        )
        # A new statement, so a new snapshot: it sees every claim that committed before the locks.
        cursor.execute(
            _sql(
                """
                WITH actual AS ({recount}), written AS (
                    INSERT INTO {summary} AS s
                        (node_id, gpu_model_id, region_id, hostname, free_whole_gpus, gpus_in_use, partly_held_gpus)
                    SELECT node_id, gpu_model_id, region_id, hostname, free, used, partly FROM actual
                    ON CONFLICT (node_id, gpu_model_id) DO UPDATE
                       SET region_id = EXCLUDED.region_id, hostname = EXCLUDED.hostname,
                           free_whole_gpus = EXCLUDED.free_whole_gpus, gpus_in_use = EXCLUDED.gpus_in_use,
                           partly_held_gpus = EXCLUDED.partly_held_gpus
                     WHERE (s.region_id, s.hostname, s.free_whole_gpus, s.gpus_in_use, s.partly_held_gpus)
                           IS DISTINCT FROM (EXCLUDED.region_id, EXCLUDED.hostname, EXCLUDED.free_whole_gpus,
                                             EXCLUDED.gpus_in_use, EXCLUDED.partly_held_gpus)
                    RETURNING 1
                ), removed AS (
                    DELETE FROM {summary} s WHERE s.node_id = ANY(%(nodes)s) AND NOT EXISTS (
                        SELECT 1 FROM actual a WHERE a.node_id = s.node_id AND a.gpu_model_id = s.gpu_model_id)
                    RETURNING 1
                )
                SELECT (SELECT count(*) FROM written) + (SELECT count(*) FROM removed)
                """,
                "AND g.node_id = ANY(%(nodes)s)",
            ),
            {"nodes": drifted},
        )
        return int(cursor.fetchone()[0])


def node_capacity_hostname_refresh(*, node_id: UUID) -> int:
    """Copy the node's hostname onto its summary rows, where it differs (an inventory report renamed
    it). Returns how many rows changed.

    Call it, in the caller's transaction, only once the node's GPU rows are locked (the inventory
    report locks them first): summary rows are locked after GPU rows, never before, in every writer.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            _sql(
                "UPDATE {summary} s SET hostname = n.hostname FROM {node} n "
                "WHERE n.id = %(node)s AND s.node_id = n.id AND s.hostname <> n.hostname"
            ),
            {"node": node_id},
        )
        return cursor.rowcount
