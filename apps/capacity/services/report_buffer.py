"""Steady-state agent reports taken into memory and written to PostgreSQL in batches.

A web process answers an agent's steady-state heartbeat (with or without telemetry) as soon as it
has checked it, and keeps it here; a flush, a few times a second, writes every node's newest
report in ONE statement (`_FLUSH_SQL`): the nodes' rows, their GPUs' latest telemetry and the
GPUs' minute of history. Per report that replaces a thread hop, a transaction and a statement by
an append to a dict, and PostgreSQL plans, locks and commits once per batch instead of per report.

What stays as it was:
- The seq compare-and-set is in the batch statement, per node and per kind (heartbeat,
  telemetry): a stale report never overwrites a newer one, whichever web process or batch
  took the newer one, including reports the DRF views wrote directly (an inventory).
  Within a process a report at or below the newest one taken for its node is answered 409 at
  once, as before; a stale one that only another process could see is answered 200 and dropped
  by the statement.
- `last_heartbeat_at` is the time the report arrived, not the time of the flush, and the liveness
  sweep allows `REPORT_STORE_ALLOWANCE` between the two (services/nodes.py), so a heartbeat
  still in a buffer never lets its node be marked down.
- A down node comes back with its first flushed heartbeat (its state read by the statement,
  never cached); a node deleted since its credential was cached has its credential forgotten,
  so its next report is refused (401).

What a buffer costs: a report is answered before it is stored. A clean exit (SIGTERM, SIGINT:
the server returns and the interpreter's exit handlers run) flushes what is left. A crash (SIGKILL,
power) loses the reports of at most the last flush period of that process — each agent's
report of at most one interval — the same class of loss as the relaxed commit the single
statement used before (`synchronous_commit = off`): the agent's next report replaces it, and one
lost beat never takes a node down (that takes two missed intervals).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection

from ..models import NodeState
from .nodes import REPORT_STORE_ALLOWANCE, node_state_transition
from .reports import TELEMETRY_FIELDS, node_credential_forget

logger = logging.getLogger(__name__)

# How often a process writes what it took. Half the sweep's allowance, so a report is stored well
# before the sweep could count its node late, even with a slow statement.
FLUSH_INTERVAL_S = REPORT_STORE_ALLOWANCE.total_seconds() / 2
# Nodes whose newest taken seq this process remembers; past it, it starts over (the statement's
# compare-and-set is what guarantees ordering; this only answers 409 early).
TAKEN_MAX = 50_000

# A batch whose statement fails is kept for the next flush (a database restart, a lost deadlock);
# after this many failures in a row it is dropped, so no report can block the ones after it.
FLUSH_ATTEMPTS = 3

TAKEN, STALE = "taken", "stale"


@dataclass
class _Pending:
    """A node's newest report of each kind not yet written."""

    beat_seq: int = 0  # 0: none (every real seq is >= 1, and a stored seq is >= 0)
    beat_at: datetime | None = None
    telemetry_seq: int = 0
    collected_at: datetime | None = None
    gpus: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class FlushResult:
    """What one flush wrote."""

    nodes: int = 0  # nodes in the batch
    telemetry_nodes: list[UUID] = field(default_factory=list)  # whose telemetry was stored
    came_back: list[UUID] = field(default_factory=list)  # down nodes a heartbeat brought back
    gone: list[UUID] = field(default_factory=list)  # no longer in the database


class ReportBuffer:
    """One per process. `take_*` run on the event loop, `flush` in a thread: a lock guards the
    swap of the pending reports, never a database call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[UUID, _Pending] = {}
        self._beat_taken: dict[UUID, int] = {}
        self._telemetry_taken: dict[UUID, int] = {}
        self._failures = 0  # flushes failed in a row

    def __len__(self) -> int:
        return len(self._pending)

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()
            self._beat_taken.clear()
            self._telemetry_taken.clear()

    @staticmethod
    def _newer(taken: dict[UUID, int], node_id: UUID, seq: int) -> bool:
        if seq <= taken.get(node_id, 0):
            return False
        if len(taken) >= TAKEN_MAX and node_id not in taken:
            taken.clear()
        taken[node_id] = seq
        return True

    def heartbeat_take(self, *, node_id: UUID, seq: int, at: datetime) -> str:
        """A heartbeat without inventory: TAKEN, or STALE (a newer one was taken here)."""
        with self._lock:
            if not self._newer(self._beat_taken, node_id, seq):
                return STALE
            pending = self._pending.setdefault(node_id, _Pending())
            pending.beat_seq, pending.beat_at = seq, at
        return TAKEN

    def telemetry_take(self, *, node_id: UUID, seq: int, telemetry: dict[str, Any]) -> str:
        """Telemetry (apart or riding on a heartbeat): TAKEN, or STALE."""
        with self._lock:
            if not self._newer(self._telemetry_taken, node_id, seq):
                return STALE
            pending = self._pending.setdefault(node_id, _Pending())
            pending.telemetry_seq, pending.collected_at = seq, telemetry["collected_at"]
            pending.gpus = {gpu["uuid"]: gpu for gpu in telemetry["gpus"]}  # a repeated UUID: the last counts
        return TAKEN

    def _swap(self) -> dict[UUID, _Pending]:
        with self._lock:
            batch, self._pending = self._pending, {}
        return batch

    def _restore(self, batch: dict[UUID, _Pending]) -> None:
        """A batch that could not be written goes back, under anything newer taken meanwhile."""
        with self._lock:
            for node_id, old in batch.items():
                new = self._pending.setdefault(node_id, _Pending())
                if old.beat_seq > new.beat_seq:
                    new.beat_seq, new.beat_at = old.beat_seq, old.beat_at
                if old.telemetry_seq > new.telemetry_seq:
                    new.telemetry_seq, new.collected_at, new.gpus = old.telemetry_seq, old.collected_at, old.gpus

    def flush(self) -> FlushResult:
        """Write every pending report in one statement (its own transaction), then bring back the
        down nodes that beat. On a database error the batch is kept for the next flush (up to
        FLUSH_ATTEMPTS failures in a row) and the error raised."""
        batch = self._swap()
        if not batch:
            return FlushResult()
        try:
            rows = _batch_write(batch)
        except Exception:
            self._failures += 1
            if self._failures < FLUSH_ATTEMPTS:
                self._restore(batch)
            else:  # the same reports failed every time: drop them rather than block every later batch
                self._failures = 0
                logger.error("dropped %d nodes' reports after %d failed flushes", len(batch), FLUSH_ATTEMPTS)
            raise
        self._failures = 0
        result = FlushResult(nodes=len(batch))
        found = set()
        for node_id, state, beat, telemetry in rows:
            found.add(node_id)
            if telemetry:
                result.telemetry_nodes.append(node_id)
            if beat and state == NodeState.DOWN:
                result.came_back.append(node_id)
        result.gone = [node_id for node_id in batch if node_id not in found]
        for node_id in result.gone:
            node_credential_forget(node_id=node_id)
        for node_id in result.came_back:
            node_state_transition(
                node_id=node_id, to_state=NodeState.READY, reason="heartbeats resumed", expected_from=[NodeState.DOWN]
            )
        return result


# One statement for the whole batch. `locked` takes the nodes' rows in key order (two processes
# flushing overlapping batches wait for each other instead of deadlocking) and decides, on the
# newest row version, which of each node's reports are newer than what is stored; the UPDATE
# writes only those; the GPU rows and their minute of history only for accepted telemetry, and
# only the node's own GPUs. A later report in the same minute overwrites that minute's sample
# with the latest values, unless they are the same (an idle GPU writes nothing more).
_FLUSH_SQL = """
WITH r AS (
    SELECT * FROM unnest(
        %(node)s::uuid[], %(beat_seq)s::bigint[], %(beat_at)s::timestamptz[],
        %(telemetry_seq)s::bigint[], %(collected_at)s::timestamptz[]
    ) AS r(node_id, beat_seq, beat_at, telemetry_seq, collected_at)
), locked AS (
    SELECT n.id, r.beat_seq > n.last_seq AS beat, r.telemetry_seq > n.last_telemetry_seq AS telemetry,
        r.beat_seq, r.beat_at, r.telemetry_seq, r.collected_at
    FROM capacity_node n JOIN r ON n.id = r.node_id
    ORDER BY n.id
    FOR UPDATE OF n
), accepted AS (
    UPDATE capacity_node n SET
        last_seq = CASE WHEN l.beat THEN l.beat_seq ELSE n.last_seq END,
        last_heartbeat_at = CASE WHEN l.beat THEN l.beat_at ELSE n.last_heartbeat_at END,
        heartbeat_interval_s = CASE WHEN l.beat THEN %(interval)s ELSE n.heartbeat_interval_s END,
        last_telemetry_seq = CASE WHEN l.telemetry THEN l.telemetry_seq ELSE n.last_telemetry_seq END
    FROM locked l
    WHERE n.id = l.id AND (l.beat OR l.telemetry)
    RETURNING n.id, n.state, l.beat, l.telemetry, l.collected_at
), updated AS (
    UPDATE capacity_gpu AS gpu
    SET utilization_pct = g.utilization_pct, memory_used_bytes = g.memory_used_bytes,
        temperature_c = g.temperature_c, power_w = g.power_w,
        ecc_uncorrected_volatile = g.ecc_uncorrected_volatile, telemetry_at = a.collected_at
    FROM accepted a JOIN unnest(
        %(gpu_node)s::uuid[], %(uuid)s::varchar[], %(utilization_pct)s::smallint[],
        %(memory_used_bytes)s::bigint[], %(temperature_c)s::smallint[], %(power_w)s::float8[],
        %(ecc_uncorrected_volatile)s::bigint[]
    ) AS g(node_id, uuid, utilization_pct, memory_used_bytes, temperature_c, power_w, ecc_uncorrected_volatile)
        ON g.node_id = a.id
    WHERE a.telemetry AND gpu.node_id = a.id AND gpu.uuid = g.uuid
    RETURNING gpu.id, g.utilization_pct, g.memory_used_bytes, a.collected_at
), sampled AS (
    INSERT INTO capacity_gpusample AS s (gpu_id, minute, utilization_pct, memory_used_bytes)
    SELECT id, date_trunc('minute', collected_at, 'UTC'), utilization_pct, memory_used_bytes
    FROM updated
    ON CONFLICT (gpu_id, minute) DO UPDATE
    SET utilization_pct = EXCLUDED.utilization_pct, memory_used_bytes = EXCLUDED.memory_used_bytes
    WHERE (s.utilization_pct, s.memory_used_bytes)
        IS DISTINCT FROM (EXCLUDED.utilization_pct, EXCLUDED.memory_used_bytes)
)
SELECT l.id, a.state, coalesce(a.beat, false), coalesce(a.telemetry, false)
FROM locked l LEFT JOIN accepted a ON a.id = l.id
"""


def _batch_params(batch: dict[UUID, _Pending]) -> dict[str, Any]:
    params: dict[str, Any] = {
        "interval": settings.CAPACITY_HEARTBEAT_INTERVAL_S,
        "node": [],
        "beat_seq": [],
        "beat_at": [],
        "telemetry_seq": [],
        "collected_at": [],
        "gpu_node": [],
        "uuid": [],
        **{name: [] for name in TELEMETRY_FIELDS},
    }
    for node_id, pending in batch.items():
        params["node"].append(node_id)
        params["beat_seq"].append(pending.beat_seq)
        params["beat_at"].append(pending.beat_at)
        params["telemetry_seq"].append(pending.telemetry_seq)
        params["collected_at"].append(pending.collected_at)
        for uuid, gpu in pending.gpus.items():
            params["gpu_node"].append(node_id)
            params["uuid"].append(uuid)
            for name in TELEMETRY_FIELDS:
                params[name].append(gpu.get(name))
    return params


def _batch_write(batch: dict[UUID, _Pending]) -> Iterable[tuple]:
    """The statement in its own transaction, committed without waiting for its WAL flush (as the
    single reports were: a crash may lose the last moment of reports, which the next replace).
    Inside an outer transaction (tests) it joins that one."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off; " + _FLUSH_SQL, _batch_params(batch))
        cursor.nextset()  # past SET's result
        return cursor.fetchall()


# The web process's buffer (apps/capacity/api/fast.py takes reports into it and flushes it).
report_buffer = ReportBuffer()
