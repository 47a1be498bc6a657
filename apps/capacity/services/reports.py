"""What node agents report: registration, heartbeats with inventory, and telemetry.

Reports carry the agent's `seq`; a report at or below the last accepted seq is stale and changes
nothing, so a delayed or replayed heartbeat can never overwrite a newer one.

Heartbeats and telemetry are the portal's most frequent requests (every agent, every 10 s each),
so their steady state is one statement each, sent in one round trip with its relaxed durability
(see `_relaxed_round_trip`); an agent folds its telemetry into the heartbeat (one request and one
statement for both), and its credential is checked against a short-lived per-process cache
instead of a query. A heartbeat that carries an inventory goes the full, atomic way.
"""

from __future__ import annotations

import hmac
import secrets
import time
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.accounts.selectors import token_digest
from provisioning.protocol import F_HEALTH_CHECK

from ..live import telemetry_changed
from ..models import Node, NodeState, RegistrationToken
from .health import node_health_apply
from .inventory import node_inventory_apply
from .nodes import node_state_transition

__all__ = [
    "ReportRejected",
    "node_authenticate",
    "node_credential_cached",
    "node_credential_forget",
    "node_heartbeat_apply",
    "node_heartbeat_report_apply",
    "node_heartbeat_telemetry_apply",
    "node_inventory_apply",
    "node_register",
    "node_telemetry_apply",
]


class ReportRejected(Exception):
    """An agent report that cannot be applied; `status` is the HTTP answer the API gives."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


@transaction.atomic
def node_register(*, token: str, inventory: dict[str, Any]) -> tuple[Node, str]:
    """Trade a one-time registration token for a node identity and credential."""
    record = RegistrationToken.objects.select_for_update().filter(token_hash=token_digest(token or "")).first()
    if record is None or not record.is_usable:
        raise ReportRejected("Registration token is unknown, used or expired; ask an operator for a new one.", 401)
    credential = secrets.token_urlsafe(32)
    node = Node.objects.create(
        region_id=record.region_id,
        hostname=inventory["hostname"],
        simulated=inventory["simulated"],
        credential_hash=token_digest(credential),
        heartbeat_interval_s=settings.CAPACITY_HEARTBEAT_INTERVAL_S,
        last_heartbeat_at=timezone.now(),
        state=NodeState.READY,
        state_reason="registered",
    )
    RegistrationToken.objects.filter(pk=record.pk).update(used_at=timezone.now(), node=node)
    node_inventory_apply(node=node, inventory=inventory)
    if inventory.get(F_HEALTH_CHECK):
        node_health_apply(node=node, result=inventory[F_HEALTH_CHECK])
    return node, credential


# node id -> (credential digest, monotonic expiry). Per process: every agent request is checked
# here, and a query (or a Redis round trip) per request was a large part of a report's cost. A
# credential never changes (registration makes a new node), so the only staleness is a node
# deleted meanwhile: its reports then find no row and the credential is forgotten
# (node_credential_forget: by the report's own statement, or by the batch that finds the node
# gone), so its next report answers 401. The expiry is only a backstop for that, hence long: at
# 60 s, 1,250 nodes re-read their credentials ~21 times a second, each a query and a thread hop.
# Nothing else about the node is cached: the reports read its state from the row they update.
CREDENTIAL_CACHE_TTL_S = 600.0
CREDENTIAL_CACHE_MAX = 50_000  # nodes; past it, the cache starts over (10,000 GPUs are 1,250 nodes)
_credentials: dict[str, tuple[str, float]] = {}


def node_credential_forget(*, node_id) -> None:
    _credentials.pop(str(node_id), None)


def node_credential_cached(*, node_id: str, credential: str) -> bool | None:
    """Whether the cache holds this node's credential and it matches; None when the cache does not
    know the node (node_authenticate then asks the database). No query: safe on the event loop."""
    cached = _credentials.get(node_id)
    if cached is None or cached[1] <= time.monotonic():
        return None
    return hmac.compare_digest(cached[0], token_digest(credential))


def node_authenticate(*, node_id: str, credential: str) -> Node | None:
    """The node whose credential this is, or None. Returns an instance holding only its key (any
    other field is read from the database when used: state is never trusted from a cache)."""
    digest = token_digest(credential)
    cached = _credentials.get(node_id)
    if cached is not None and cached[1] > time.monotonic():
        stored = cached[0]
    else:
        # order_by(): Node's default ordering joins the region, which a lookup by key does not need.
        stored = Node.objects.filter(pk=node_id).order_by().values_list("credential_hash", flat=True).first()
        if stored is None:
            return None
        if len(_credentials) >= CREDENTIAL_CACHE_MAX:
            _credentials.clear()
        _credentials[node_id] = (stored, time.monotonic() + CREDENTIAL_CACHE_TTL_S)
    if not hmac.compare_digest(stored, digest):
        return None
    return Node.from_db("default", ["id"], [Node._meta.pk.to_python(node_id)])


def _relaxed_round_trip(sql: str, params: dict[str, Any]) -> tuple | None:
    """Run one statement in its own transaction that commits without waiting for its WAL flush, in
    one round trip; returns its first row.

    A crash can lose the last few heartbeats or telemetry samples, which the next report replaces
    anyway; it saves the fsync wait on the most frequent writes the portal takes. SET LOCAL and
    the statement go as one simple-protocol message (Django's client-side binding cursor), which
    PostgreSQL runs as one implicit transaction, instead of BEGIN, SET, the statement and COMMIT.
    Inside an outer transaction (tests) the setting lasts until that one ends, as before.
    """
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off; " + sql, params)
        cursor.nextset()  # past SET's result
        return cursor.fetchone()


_HEARTBEAT_SQL = (
    "UPDATE capacity_node SET last_seq = %(seq)s, last_heartbeat_at = %(now)s, heartbeat_interval_s = %(interval)s "
    "WHERE id = %(node)s AND last_seq < %(seq)s RETURNING state"
)


def _refused(node: Node, message: str) -> ReportRejected:
    """Why a compare-and-set on the node's row updated nothing: a stale report (409), or a node
    deleted since its credential was cached (401). One more read, only on this rare path."""
    if not Node.objects.filter(pk=node.pk).exists():
        node_credential_forget(node_id=node.pk)
        return ReportRejected("Unknown node or wrong node credential.", 401)
    return ReportRejected(message, 409)


def node_heartbeat_apply(*, node: Node, seq: int, inventory: dict[str, Any] | None) -> Node:
    """Record a heartbeat (compare-and-set on `seq`) and apply its inventory, if it carries one."""
    now = timezone.now()
    interval = settings.CAPACITY_HEARTBEAT_INTERVAL_S
    params = {"seq": seq, "now": now, "interval": interval, "node": node.pk}
    if inventory is None:
        row = _relaxed_round_trip(_HEARTBEAT_SQL, params)
    else:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(_HEARTBEAT_SQL, params)
                row = cursor.fetchone()
            if row is not None:
                node_inventory_apply(node=node, inventory=inventory)
                if inventory.get(F_HEALTH_CHECK):
                    node_health_apply(node=node, result=inventory[F_HEALTH_CHECK])
    state = row[0] if row else None
    if state is None:
        raise _refused(node, "Stale heartbeat: a newer one was already accepted.")
    _beat_recorded(node, seq=seq, now=now, interval=interval, state=state)
    return node


def _beat_recorded(node: Node, *, seq: int, now: datetime, interval: int, state: str) -> None:
    """After an accepted heartbeat: the node object says what was stored; a down node comes back
    (its state as the heartbeat's own statement read it, never a cached one)."""
    node.last_seq, node.last_heartbeat_at, node.heartbeat_interval_s, node.state = seq, now, interval, state
    if state == NodeState.DOWN:
        node_state_transition(
            node_id=node.pk,
            to_state=NodeState.READY,
            reason="heartbeats resumed",
            expected_from=[NodeState.DOWN],
        )
        node.refresh_from_db(fields=["state", "state_reason", "state_changed_at"])


TELEMETRY_FIELDS = ["utilization_pct", "memory_used_bytes", "temperature_c", "power_w", "ecc_uncorrected_volatile"]

# The seq compare-and-set, the GPU rows and their history in one statement: the GPU rows are
# written only when the node's row was (`accepted` is empty for a stale report), and only this
# node's GPUs; each updated GPU's minute of history (GpuSample) is inserted, or, for a later
# report in the same minute, overwritten with the latest values (unless they are the same, so an
# idle GPU's reports write nothing more).
_TELEMETRY_ACCEPTED = """
WITH accepted AS (
    UPDATE capacity_node SET last_telemetry_seq = %(seq)s
    WHERE id = %(node)s AND last_telemetry_seq < %(seq)s
    RETURNING id
)"""
# A heartbeat carrying telemetry: both compare-and-sets on the node's one row, in one UPDATE (an
# agent's heartbeats and telemetry share one seq counter, so both are below a fresh report's seq).
_BEAT_ACCEPTED = """
WITH accepted AS (
    UPDATE capacity_node
    SET last_seq = %(seq)s, last_heartbeat_at = %(now)s, heartbeat_interval_s = %(interval)s,
        last_telemetry_seq = %(seq)s
    WHERE id = %(node)s AND last_seq < %(seq)s AND last_telemetry_seq < %(seq)s
    RETURNING id, state
)"""
_TELEMETRY_WRITES = """, updated AS (
    UPDATE capacity_gpu AS gpu
    SET utilization_pct = r.utilization_pct, memory_used_bytes = r.memory_used_bytes,
        temperature_c = r.temperature_c, power_w = r.power_w,
        ecc_uncorrected_volatile = r.ecc_uncorrected_volatile, telemetry_at = %(collected_at)s
    FROM accepted, unnest(
        %(uuid)s::varchar[], %(utilization_pct)s::smallint[], %(memory_used_bytes)s::bigint[],
        %(temperature_c)s::smallint[], %(power_w)s::float8[], %(ecc_uncorrected_volatile)s::bigint[]
    ) AS r(uuid, utilization_pct, memory_used_bytes, temperature_c, power_w, ecc_uncorrected_volatile)
    WHERE gpu.node_id = accepted.id AND gpu.uuid = r.uuid
    RETURNING gpu.id, r.utilization_pct, r.memory_used_bytes
), sampled AS (
    INSERT INTO capacity_gpusample AS s (gpu_id, minute, utilization_pct, memory_used_bytes)
    SELECT id, date_trunc('minute', %(collected_at)s::timestamptz, 'UTC'), utilization_pct, memory_used_bytes
    FROM updated
    ON CONFLICT (gpu_id, minute) DO UPDATE
    SET utilization_pct = EXCLUDED.utilization_pct, memory_used_bytes = EXCLUDED.memory_used_bytes
    WHERE (s.utilization_pct, s.memory_used_bytes)
        IS DISTINCT FROM (EXCLUDED.utilization_pct, EXCLUDED.memory_used_bytes)
)
"""
_TELEMETRY_SQL = (
    _TELEMETRY_ACCEPTED + _TELEMETRY_WRITES + "SELECT (SELECT count(*) FROM accepted), (SELECT count(*) FROM updated)"
)
_BEAT_TELEMETRY_SQL = (
    _BEAT_ACCEPTED + _TELEMETRY_WRITES + "SELECT (SELECT state FROM accepted), (SELECT count(*) FROM updated)"
)


def _telemetry_params(*, node: Node, seq: int, telemetry: dict[str, Any]) -> dict[str, Any]:
    reports = {gpu["uuid"]: gpu for gpu in telemetry["gpus"]}  # a repeated UUID: the last one counts
    collected_at: datetime = telemetry["collected_at"]
    params: dict[str, Any] = {"seq": seq, "node": node.pk, "collected_at": collected_at, "uuid": list(reports)}
    for field in TELEMETRY_FIELDS:
        params[field] = [report.get(field) for report in reports.values()]
    return params


def node_telemetry_apply(*, node: Node, seq: int, telemetry: dict[str, Any]) -> int:
    """Store the latest telemetry per GPU, and its minute of history. Returns how many GPUs were
    updated."""
    accepted, updated = _relaxed_round_trip(_TELEMETRY_SQL, _telemetry_params(node=node, seq=seq, telemetry=telemetry))
    if not accepted:
        raise _refused(node, "Stale telemetry: newer telemetry was already accepted.")
    transaction.on_commit(lambda: telemetry_changed(node_id=node.pk))
    return updated


def node_heartbeat_telemetry_apply(*, node: Node, seq: int, telemetry: dict[str, Any]) -> tuple[Node, int]:
    """A steady-state heartbeat (no inventory) carrying the agent's telemetry: both recorded in one
    statement. Returns the node and how many GPUs were updated. Should the telemetry's seq alone
    be stale (telemetry sent apart with a higher seq), the heartbeat is still recorded and the
    telemetry dropped (0 GPUs updated)."""
    now = timezone.now()
    interval = settings.CAPACITY_HEARTBEAT_INTERVAL_S
    params = {**_telemetry_params(node=node, seq=seq, telemetry=telemetry), "now": now, "interval": interval}
    state, updated = _relaxed_round_trip(_BEAT_TELEMETRY_SQL, params)
    if state is None:  # the rare path: which of the two was stale, or is the node gone?
        return node_heartbeat_apply(node=node, seq=seq, inventory=None), 0
    _beat_recorded(node, seq=seq, now=now, interval=interval, state=state)
    transaction.on_commit(lambda: telemetry_changed(node_id=node.pk))
    return node, updated


def node_heartbeat_report_apply(
    *, node: Node, seq: int, inventory: dict[str, Any] | None, telemetry: dict[str, Any] | None
) -> tuple[Node, int | None]:
    """A heartbeat as the agent sends it: with an inventory when it changed, with telemetry when
    due. Returns the node and how many GPUs the telemetry updated (None: it carried none)."""
    if telemetry is None:
        return node_heartbeat_apply(node=node, seq=seq, inventory=inventory), None
    if inventory is None:  # the steady state: one statement
        return node_heartbeat_telemetry_apply(node=node, seq=seq, telemetry=telemetry)
    # An agent's first heartbeat after a start: the inventory first, so new GPUs get their values.
    node = node_heartbeat_apply(node=node, seq=seq, inventory=inventory)
    try:
        return node, node_telemetry_apply(node=node, seq=seq, telemetry=telemetry)
    except ReportRejected:  # only its telemetry seq was stale: the heartbeat stands
        return node, 0
