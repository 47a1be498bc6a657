"""A node agent's health check report (provisioning/agent/health.py): stored on the node, and a
failed one takes a ready node out of placement.

Only READY -> CORDONED, through the one node state transition (compare-and-set + event row): a
node an operator already cordoned, drains or maintains keeps its state and reason, and a later
passing check never returns a node to service on its own; an operator uncordons it once the
GPU has been looked at.
"""

from __future__ import annotations

from typing import Any

from ..live import inventory_changed_on_commit
from ..models import Node, NodeState
from .nodes import node_state_transition

MAX_REASONS = 20


def node_health_reason(*, result: dict[str, Any]) -> str:
    """The cordon reason: the first problem, and how many more."""
    reasons = result.get("reasons") or ["no reason given"]
    more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
    return f"health check failed: {reasons[0]}{more}"


def node_health_apply(*, node: Node, result: dict[str, Any]) -> bool:
    """Store the check on the node (if newer than the stored one); cordon a ready node it failed.

    Runs inside the report's transaction (registration or a heartbeat with inventory). Returns
    whether the node was cordoned by this report."""
    values = {
        "health_checked_at": result["checked_at"],
        "health_passed": bool(result["passed"]),
        "health_reasons": [str(reason)[:200] for reason in (result.get("reasons") or [])][:MAX_REASONS],
        "health_note": str(result.get("cuda_note") or "")[:200],
    }
    # A replayed or older check never overwrites a newer one.
    stale = Node.objects.filter(pk=node.pk, health_checked_at__gte=values["health_checked_at"])
    if stale.exists():
        return False
    Node.objects.filter(pk=node.pk).update(**values)
    inventory_changed_on_commit(node_id=node.pk)
    if values["health_passed"]:
        return False
    cordoned = node_state_transition(
        node_id=node.pk,
        to_state=NodeState.CORDONED,
        reason=node_health_reason(result=result),
        expected_from=[NodeState.READY],
    )
    return cordoned is not None
