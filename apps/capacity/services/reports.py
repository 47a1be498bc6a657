"""What node agents report: registration, heartbeats with inventory, and telemetry.

Reports carry the agent's `seq`; a report at or below the last accepted seq is stale and changes
nothing, so a delayed or replayed heartbeat can never overwrite a newer one.

Heartbeats and telemetry are the portal's most frequent requests (every agent, every 10 s each),
so their steady state is one statement each, sent in one round trip with its relaxed durability
(see `_relaxed_round_trip`). A heartbeat that carries an inventory goes the full, atomic way.
"""

from __future__ import annotations

import hmac
import secrets
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
    "node_heartbeat_apply",
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


def node_authenticate(*, node_id: str, credential: str) -> Node | None:
    # order_by(): Node's default ordering joins the region, which a lookup by key does not need.
    fields = ("pk", "credential_hash", "state", "heartbeat_interval_s")
    node = Node.objects.filter(pk=node_id).order_by().only(*fields).first()
    if node is None or not hmac.compare_digest(node.credential_hash, token_digest(credential)):
        return None
    return node


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
    "WHERE id = %(node)s AND last_seq < %(seq)s RETURNING 1"
)


def node_heartbeat_apply(*, node: Node, seq: int, inventory: dict[str, Any] | None) -> Node:
    """Record a heartbeat (compare-and-set on `seq`) and apply its inventory, if it carries one."""
    now = timezone.now()
    interval = settings.CAPACITY_HEARTBEAT_INTERVAL_S
    if inventory is None:
        params = {"seq": seq, "now": now, "interval": interval, "node": node.pk}
        accepted = _relaxed_round_trip(_HEARTBEAT_SQL, params) is not None
    else:
        with transaction.atomic():
            accepted = bool(
                Node.objects.filter(pk=node.pk, last_seq__lt=seq).update(
                    last_seq=seq, last_heartbeat_at=now, heartbeat_interval_s=interval
                )
            )
            if accepted:
                node_inventory_apply(node=node, inventory=inventory)
                if inventory.get(F_HEALTH_CHECK):
                    node_health_apply(node=node, result=inventory[F_HEALTH_CHECK])
    if not accepted:
        raise ReportRejected("Stale heartbeat: a newer one was already accepted.", 409)
    node.last_seq, node.last_heartbeat_at, node.heartbeat_interval_s = seq, now, interval
    if node.state == NodeState.DOWN:
        node_state_transition(
            node_id=node.pk,
            to_state=NodeState.READY,
            reason="heartbeats resumed",
            expected_from=[NodeState.DOWN],
        )
        node.refresh_from_db()
    return node


TELEMETRY_FIELDS = ["utilization_pct", "memory_used_bytes", "temperature_c", "power_w", "ecc_uncorrected_volatile"]

# The seq compare-and-set, the GPU rows and their history in one statement: the GPU rows are
# written only when the node's row was (`accepted` is empty for a stale report), and only this
# node's GPUs; each updated GPU's minute of history (GpuSample) is inserted, or, for a later
# report in the same minute, overwritten with the latest values (unless they are the same, so an
# idle GPU's reports write nothing more).
_TELEMETRY_SQL = """
WITH accepted AS (
    UPDATE capacity_node SET last_telemetry_seq = %(seq)s
    WHERE id = %(node)s AND last_telemetry_seq < %(seq)s
    RETURNING id
), updated AS (
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
SELECT (SELECT count(*) FROM accepted), (SELECT count(*) FROM updated)
"""


def node_telemetry_apply(*, node: Node, seq: int, telemetry: dict[str, Any]) -> int:
    """Store the latest telemetry per GPU, and its minute of history. Returns how many GPUs were
    updated."""
    reports = {gpu["uuid"]: gpu for gpu in telemetry["gpus"]}  # a repeated UUID: the last one counts
    collected_at: datetime = telemetry["collected_at"]
    params: dict[str, Any] = {"seq": seq, "node": node.pk, "collected_at": collected_at, "uuid": list(reports)}
    for field in TELEMETRY_FIELDS:
        params[field] = [report.get(field) for report in reports.values()]
    accepted, updated = _relaxed_round_trip(_TELEMETRY_SQL, params)
    if not accepted:
        raise ReportRejected("Stale telemetry: newer telemetry was already accepted.", 409)
    transaction.on_commit(lambda: telemetry_changed(node_id=node.pk))
    return updated
