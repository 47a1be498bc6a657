"""Nodes that stop heartbeating go down; their allocations are marked lost."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.capacity.models import Node, NodeEvent, NodeState
from apps.capacity.services.nodes import node_liveness_check, node_state_transition
from tests.factories.catalog import RegionFactory

pytestmark = pytest.mark.django_db


def make_node(region, seconds_since_heartbeat: float, state=NodeState.READY) -> Node:
    return Node.objects.create(
        region=region,
        hostname=f"n{seconds_since_heartbeat}",
        simulated=True,
        credential_hash="x",
        state=state,
        last_heartbeat_at=timezone.now() - timedelta(seconds=seconds_since_heartbeat),
    )


def test_silent_nodes_go_down_and_fresh_ones_stay(settings):
    settings.CAPACITY_HEARTBEAT_INTERVAL_S = 10
    settings.CAPACITY_HEARTBEAT_MISSES = 2
    region = RegionFactory()
    fresh, silent, cordoned_silent = (
        make_node(region, 5),
        make_node(region, 25),
        make_node(region, 60, NodeState.CORDONED),
    )

    assert node_liveness_check() == 2

    assert Node.objects.get(pk=fresh.pk).state == NodeState.READY
    assert Node.objects.get(pk=silent.pk).state == NodeState.DOWN
    assert Node.objects.get(pk=cordoned_silent.pk).state == NodeState.DOWN
    assert "missed 2 heartbeats" in NodeEvent.objects.get(node=silent).reason
    assert node_liveness_check() == 0  # idempotent


def test_an_invalid_operator_transition_is_refused(settings):
    node = make_node(RegionFactory(), 0, NodeState.DOWN)
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="cannot become"):
        node_state_transition(node_id=node.pk, to_state=NodeState.CORDONED, reason="test")
    assert not NodeEvent.objects.exists()
