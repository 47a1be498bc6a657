"""Nodes: registration with a one-time token, agent reports (heartbeat, inventory, telemetry),
state transitions and liveness."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from apps.accounts.selectors import token_digest

from ..live import inventory_changed_on_commit
from ..models import Node, NodeEvent, NodeState, RegistrationToken

# Which operator or system transitions are allowed, from → to.
ALLOWED_TRANSITIONS: dict[str, set[str]] = {
    NodeState.READY: {NodeState.CORDONED, NodeState.DRAINING, NodeState.MAINTENANCE, NodeState.DOWN},
    NodeState.CORDONED: {NodeState.READY, NodeState.DRAINING, NodeState.MAINTENANCE, NodeState.DOWN},
    NodeState.DRAINING: {NodeState.READY, NodeState.CORDONED, NodeState.MAINTENANCE, NodeState.DOWN},
    NodeState.MAINTENANCE: {NodeState.READY, NodeState.CORDONED, NodeState.DOWN},
    NodeState.DOWN: {NodeState.READY, NodeState.MAINTENANCE},
}


@transaction.atomic
def node_state_transition(
    *,
    node_id: UUID,
    to_state: str,
    reason: str,
    actor=None,
    expected_from: Iterable[str] | None = None,
    only_if: Q | None = None,
) -> Node | None:
    """Move a node to `to_state` with a compare-and-set on its current state, and log the event.

    Returns the updated node, or None when the node was no longer in an expected state (someone
    else moved it first) or no longer matches `only_if`; that is not an error for periodic callers.
    """
    node = Node.objects.get(pk=node_id)
    from_states = set(expected_from) if expected_from is not None else {node.state}
    if node.state not in from_states:
        return None
    if to_state not in ALLOWED_TRANSITIONS.get(node.state, set()):
        raise ValidationError(f"A {node.state} node cannot become {to_state}.")
    now = timezone.now()
    guard = Node.objects.filter(pk=node.pk, state=node.state)
    if only_if is not None:
        guard = guard.filter(only_if)
    changed = guard.update(state=to_state, state_reason=reason[:200], state_changed_at=now)
    if not changed:
        return None
    NodeEvent.objects.create(node=node, from_state=node.state, to_state=to_state, reason=reason[:200], actor=actor)
    _on_state_entered(node_id=node.pk, from_state=node.state, to_state=to_state)
    inventory_changed_on_commit(node_id=node.pk)
    node.refresh_from_db()
    return node


def _on_state_entered(*, node_id: UUID, from_state: str, to_state: str) -> None:
    from .allocations import allocations_mark_lost, allocations_release_lost

    if to_state == NodeState.DOWN:
        allocations_mark_lost(node_id=node_id)
    elif from_state == NodeState.DOWN and to_state == NodeState.READY:
        allocations_release_lost(node_id=node_id)


def node_cordon(*, node: Node, actor, reason: str = "cordoned by an operator") -> Node | None:
    return node_state_transition(node_id=node.pk, to_state=NodeState.CORDONED, reason=reason, actor=actor)


def node_drain(*, node: Node, actor, reason: str = "drained by an operator") -> Node | None:
    return node_state_transition(node_id=node.pk, to_state=NodeState.DRAINING, reason=reason, actor=actor)


def node_uncordon(*, node: Node, actor, reason: str = "returned to service by an operator") -> Node | None:
    return node_state_transition(node_id=node.pk, to_state=NodeState.READY, reason=reason, actor=actor)


def node_maintenance(*, node: Node, actor, reason: str = "maintenance by an operator") -> Node | None:
    return node_state_transition(node_id=node.pk, to_state=NodeState.MAINTENANCE, reason=reason, actor=actor)


# --- registration ------------------------------------------------------------------------------


@transaction.atomic
def registration_token_create(*, region, actor, note: str = "", ttl_hours: int = 24) -> tuple[RegistrationToken, str]:
    """A one-time token for a new host's agent. Only its digest is stored; shown once."""
    if not 1 <= ttl_hours <= 24 * 30:
        raise ValidationError({"ttl_hours": "A token lives between 1 hour and 30 days."})
    token = f"ncr_{secrets.token_urlsafe(32)}"
    record = RegistrationToken.objects.create(
        token_hash=token_digest(token),
        region=region,
        note=note[:120],
        created_by=actor,
        expires_at=timezone.now() + timedelta(hours=ttl_hours),
    )
    return record, token


def heartbeat_interval_s() -> int:
    return settings.CAPACITY_HEARTBEAT_INTERVAL_S


# The sweep's probe: only the states a sweep can move to DOWN, spelled as a list so that PostgreSQL
# reads them as index ranges of (state, last_heartbeat_at), one short descent per state; with
# `state <> 'down'` it could not use the index's leading column and would read every node.
_SWEPT_STATES = [s for s in NodeState.values if s != NodeState.DOWN]


# A heartbeat is stamped when it arrives, and a web process stores it in a batch up to this much
# later (services/report_buffer.py flushes at half of it): the sweep waits this long past the
# missed intervals, so a beat still in a buffer never lets its node be marked down.
REPORT_STORE_ALLOWANCE = timedelta(milliseconds=500)


def node_liveness_cutoff(*, now: datetime) -> datetime:
    """A node whose last heartbeat is older than this at `now` has missed its beats. Strictly
    older: a node that beat exactly `misses` intervals (plus the store allowance) ago is still on
    time."""
    missed = timedelta(seconds=settings.CAPACITY_HEARTBEAT_INTERVAL_S * settings.CAPACITY_HEARTBEAT_MISSES)
    return now - missed - REPORT_STORE_ALLOWANCE


def node_liveness_check(*, now: datetime | None = None) -> int:
    """Mark down every node whose agent has missed its heartbeats. Returns how many went down.

    Its common case, nobody late, is one index probe that finds no entry and reads no table page.
    """
    misses = settings.CAPACITY_HEARTBEAT_MISSES
    deadline = node_liveness_cutoff(now=now or timezone.now())
    silent = Node.objects.filter(state__in=_SWEPT_STATES, last_heartbeat_at__lt=deadline).order_by()
    went_down = 0
    for node in silent.only("pk", "state", "last_heartbeat_at"):
        reason = f"missed {misses} heartbeats (last {node.last_heartbeat_at:%H:%M:%S} UTC)"
        # The guard re-checks the deadline in the UPDATE: a heartbeat that lands meanwhile wins.
        if node_state_transition(
            node_id=node.pk,
            to_state=NodeState.DOWN,
            reason=reason,
            expected_from=[node.state],
            only_if=Q(last_heartbeat_at__lt=deadline),
        ):
            went_down += 1
    return went_down


# One descent of the (state, last_heartbeat_at) index per swept state: min() under an equality on
# the leading column is the first entry of that state, where min() under an IN list would read
# every entry of the four states.
_NEXT_SILENT_SQL = "SELECT LEAST({}) ".format(
    ", ".join("(SELECT min(last_heartbeat_at) FROM capacity_node WHERE state = %s)" for _ in _SWEPT_STATES)
)
# The cut-off is strict (older than), so a node is late just after its deadline, not at it.
_PAST_DEADLINE = timedelta(milliseconds=10)


def node_liveness_next_sweep_at() -> datetime | None:
    """When the next sweep finds someone late unless that node beats first: the oldest heartbeat
    of a node the sweep could move, plus the missed intervals. None when there is no such node."""
    with connection.cursor() as cursor:
        cursor.execute(_NEXT_SILENT_SQL, _SWEPT_STATES)
        oldest = cursor.fetchone()[0]
    if oldest is None:
        return None
    misses = settings.CAPACITY_HEARTBEAT_MISSES
    missed = timedelta(seconds=settings.CAPACITY_HEARTBEAT_INTERVAL_S * misses)
    return oldest + missed + REPORT_STORE_ALLOWANCE + _PAST_DEADLINE
