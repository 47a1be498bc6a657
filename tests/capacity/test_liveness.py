"""Nodes that stop heartbeating go down; their allocations are marked lost."""

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from apps.capacity.models import Node, NodeEvent, NodeState
from apps.capacity.services.nodes import (
    REPORT_STORE_ALLOWANCE,
    node_liveness_check,
    node_liveness_cutoff,
    node_state_transition,
)
from apps.capacity.services.report_buffer import FLUSH_INTERVAL_S
from apps.capacity.tasks import LIVENESS_PLAN_STALE_S, liveness_next_sweep_eta, liveness_plan_needed
from tests.factories.catalog import RegionFactory

pytestmark = pytest.mark.django_db


# The promise: a node that misses two beats is down within 2 intervals + 1 s of its last.
INTERVAL_S, MISSES = 10, 2
BOUND_S = 2 * INTERVAL_S + 1
# What the sweep's cadence may not use of the bound: beat sending the task, the broker, the worker.
DELIVERY_ALLOWANCE_S = 0.25


def make_node(region, seconds_since_heartbeat: float, state=NodeState.READY, now: datetime | None = None) -> Node:
    return Node.objects.create(
        region=region,
        hostname=f"n{seconds_since_heartbeat}",
        simulated=True,
        credential_hash="x",
        state=state,
        last_heartbeat_at=(now or timezone.now()) - timedelta(seconds=seconds_since_heartbeat),
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


def test_the_cut_off_is_two_missed_intervals_and_the_store_allowance_to_the_microsecond(settings):
    """A heartbeat is stamped on arrival and stored in a batch up to REPORT_STORE_ALLOWANCE later
    (services/report_buffer.py): the sweep waits for it, so a buffered beat cannot be missed."""
    settings.CAPACITY_HEARTBEAT_INTERVAL_S, settings.CAPACITY_HEARTBEAT_MISSES = INTERVAL_S, MISSES
    now = timezone.now()
    on_time = make_node(RegionFactory(), 2 * INTERVAL_S, now=now)

    assert node_liveness_cutoff(now=now) == now - timedelta(seconds=2 * INTERVAL_S) - REPORT_STORE_ALLOWANCE
    assert node_liveness_check(now=now + REPORT_STORE_ALLOWANCE) == 0  # not late yet
    assert node_liveness_check(now=now + REPORT_STORE_ALLOWANCE + timedelta(microseconds=1)) == 1
    assert Node.objects.get(pk=on_time.pk).state == NodeState.DOWN


def test_the_store_allowance_leaves_room_for_the_sweeps_delivery_within_the_bound():
    assert FLUSH_INTERVAL_S < REPORT_STORE_ALLOWANCE.total_seconds()
    assert 2 * INTERVAL_S + REPORT_STORE_ALLOWANCE.total_seconds() <= BOUND_S - DELIVERY_ALLOWANCE_S


def test_swept_when_planned_a_silent_node_is_down_within_two_intervals_and_a_second(settings):
    """Given silent nodes whose last beats fall at many phases of an interval, when each sweep
    runs when the one before planned it (or at beat's backstop, whichever is first), then each node
    goes down after two whole intervals and at most 2 intervals + 1 s after its last beat, less an
    allowance for the task's delivery. Fails if the cut-off or the planning grows."""
    backstop = settings.CELERY_BEAT_SCHEDULE["capacity-node-liveness"]["schedule"]
    settings.CAPACITY_HEARTBEAT_INTERVAL_S, settings.CAPACITY_HEARTBEAT_MISSES = INTERVAL_S, MISSES
    start = timezone.now()
    region = RegionFactory()
    phases = [k * 0.37 for k in range(27)]  # last beats spread over 10 s, none on a whole second
    nodes = {make_node(region, phase, now=start).pk: phase for phase in phases}
    went_down_at: dict = {}
    sweeps = 0

    at = start
    while len(went_down_at) < len(nodes) and at < start + timedelta(seconds=2 * BOUND_S):
        node_liveness_check(now=at)
        sweeps += 1
        for pk in Node.objects.filter(pk__in=nodes, state=NodeState.DOWN).values_list("pk", flat=True):
            went_down_at.setdefault(pk, (at - start).total_seconds())
        planned = liveness_next_sweep_eta(now=at)
        at = min(planned, at + timedelta(seconds=backstop)) if planned else at + timedelta(seconds=backstop)

    assert set(went_down_at) == set(nodes)
    silent_for = {pk: went_down_at[pk] + phase for pk, phase in nodes.items()}  # since each last beat
    assert min(silent_for.values()) > 2 * INTERVAL_S
    assert max(silent_for.values()) <= BOUND_S - DELIVERY_ALLOWANCE_S
    assert sweeps <= len(nodes) + 2 * BOUND_S / backstop  # about one a node going down, plus backstops


def test_a_planned_sweep_waits_for_the_oldest_beats_deadline_and_ignores_down_nodes(settings):
    settings.CAPACITY_HEARTBEAT_INTERVAL_S, settings.CAPACITY_HEARTBEAT_MISSES = INTERVAL_S, MISSES
    now = timezone.now()
    region = RegionFactory()
    make_node(region, 600, NodeState.DOWN, now=now)  # long silent, already down: not waited for
    assert liveness_next_sweep_eta(now=now) is None  # nobody the sweep could move
    make_node(region, 3, now=now)
    make_node(region, 7, NodeState.CORDONED, now=now)

    eta = liveness_next_sweep_eta(now=now)

    deadline = now - timedelta(seconds=7) + timedelta(seconds=2 * INTERVAL_S)  # the cordoned one's
    assert deadline < eta <= deadline + timedelta(seconds=1 - DELIVERY_ALLOWANCE_S)
    assert node_liveness_check(now=eta) == 1  # at its eta, the sweep finds that node late


def test_one_planned_sweep_at_a_time_unless_it_was_lost():
    # Given a sweep planned at t=100: a later deadline waits for it; an earlier one plans anew.
    assert not liveness_plan_needed(planned=100.0, next_at=110.0, now=90.0)
    assert liveness_plan_needed(planned=100.0, next_at=95.0, now=90.0)
    assert liveness_plan_needed(planned=None, next_at=110.0, now=90.0)
    # When it is long overdue (a restarted worker dropped it), the next one is planned.
    assert liveness_plan_needed(planned=100.0, next_at=110.0, now=100.0 + LIVENESS_PLAN_STALE_S + 1)


def test_a_sweep_with_nobody_late_is_one_query_and_moves_nothing(settings, django_assert_num_queries):
    settings.CAPACITY_HEARTBEAT_INTERVAL_S, settings.CAPACITY_HEARTBEAT_MISSES = INTERVAL_S, MISSES
    region = RegionFactory()
    for seconds in (0, 5, 19.9):
        make_node(region, seconds)
    make_node(region, 600, NodeState.DOWN)  # already down: not the sweep's business

    with django_assert_num_queries(1):
        assert node_liveness_check() == 0
    assert not NodeEvent.objects.exists()
