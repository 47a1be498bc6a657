"""The agent's node health check as the portal takes it: stored on the node, a failed one cordons
a ready node (one transition + event), never overrides an operator, never uncordons by itself."""

import copy
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.capacity.models import Node, NodeEvent, NodeState
from apps.capacity.services.nodes import node_maintenance, registration_token_create
from apps.catalog.models import Region
from provisioning.agent.health import node_health_check
from provisioning.agent.simulate import simulated_inventory_raw, simulation_spec_parse
from tests.capacity.test_agent_api import H100, heartbeat, register
from tests.factories.accounts import UserFactory

pytestmark = pytest.mark.django_db


def check(spec: str, *, at=None) -> dict:
    result = node_health_check(simulated_inventory_raw(simulation_spec_parse(spec), "sim-node-01"))
    payload = result.to_payload()
    if at is not None:
        payload["checked_at"] = at.isoformat()
    return payload


def inventory_with(health: dict) -> dict:
    return {**copy.deepcopy(H100["inventory_payload"]), "health_check": health}


@pytest.fixture
def token(demo_catalog):
    return registration_token_create(region=Region.objects.get(code="us-east-1"), actor=None)[1]


def test_a_failed_check_at_registration_cordons_the_node_with_the_reason(api_client, token):
    # when a node registers with a failed health check (GPU 3 of 8 bad)
    reply = register(api_client, token, inventory_with(check("8xH100-80GB,bad=3")))
    # then it is registered, cordoned with the reason, and the event says why
    assert reply.status_code == 201, reply.content
    node = Node.objects.get(pk=reply.json()["node_id"])
    assert node.state == NodeState.CORDONED
    assert node.state_reason.startswith("health check failed: GPU 3 (GPU-SIM-")
    assert node.health_passed is False and node.health_checked_at is not None
    assert any("row remapping failed" in reason for reason in node.health_reasons)
    event = NodeEvent.objects.get(node=node, to_state=NodeState.CORDONED)
    assert (event.from_state, event.reason) == (NodeState.READY, node.state_reason)


def test_a_passing_check_keeps_the_node_ready_and_is_stored(api_client, token):
    reply = register(api_client, token, inventory_with(check("8xH100-80GB")))
    node = Node.objects.get(pk=reply.json()["node_id"])
    assert node.state == NodeState.READY
    assert node.health_passed is True and node.health_reasons == []
    assert "simulated" in node.health_note


@pytest.fixture
def node_client(api_client, token):
    reply = register(api_client, token, inventory_with(check("8xH100-80GB"))).json()
    api_client.credentials(HTTP_AUTHORIZATION=f"Node {reply['node_id']}:{reply['credential']}")
    api_client.node = Node.objects.get(pk=reply["node_id"])
    return api_client


def test_a_later_pass_does_not_uncordon(node_client):
    # given a node a heartbeat's failed check cordoned
    later = timezone.now() + timedelta(minutes=1)
    assert heartbeat(node_client, 10, inventory_with(check("8xH100-80GB,bad=0", at=later))).status_code == 200
    assert Node.objects.get(pk=node_client.node.pk).state == NodeState.CORDONED
    # when a later check passes
    latest = later + timedelta(minutes=1)
    assert heartbeat(node_client, 11, inventory_with(check("8xH100-80GB", at=latest))).status_code == 200
    # then the pass is stored but the node stays cordoned until an operator acts
    node = Node.objects.get(pk=node_client.node.pk)
    assert node.state == NodeState.CORDONED and node.health_passed is True
    assert NodeEvent.objects.filter(node=node, to_state=NodeState.CORDONED).count() == 1


def test_a_failed_check_leaves_an_operators_state_alone(node_client):
    node_maintenance(node=node_client.node, actor=None, reason="swapping a PSU")
    later = timezone.now() + timedelta(minutes=1)
    heartbeat(node_client, 10, inventory_with(check("8xH100-80GB,bad=1", at=later)))
    node = Node.objects.get(pk=node_client.node.pk)
    assert (node.state, node.state_reason) == (NodeState.MAINTENANCE, "swapping a PSU")
    assert node.health_passed is False


def test_an_older_check_never_overwrites_a_newer_one(node_client):
    earlier = timezone.now() - timedelta(hours=1)
    heartbeat(node_client, 10, inventory_with(check("8xH100-80GB,bad=1", at=earlier)))
    node = Node.objects.get(pk=node_client.node.pk)
    assert node.state == NodeState.READY and node.health_passed is True


@pytest.mark.parametrize("bad", [{"passed": "maybe"}, {"reasons": "x"}, {"checked_at": "yesterday"}])
def test_a_malformed_check_is_400(node_client, bad):
    health = {**check("8xH100-80GB"), **bad}
    assert heartbeat(node_client, 10, inventory_with(health)).status_code == 400


def test_the_operators_node_page_shows_the_last_check(api_client, token, client):
    # given a node cordoned by a failed check
    reply = register(api_client, token, inventory_with(check("8xH100-80GB,bad=3")))
    node = Node.objects.get(pk=reply.json()["node_id"])
    client.force_login(UserFactory(is_staff=True))
    # when an operator opens its page
    page = client.get(reverse("capacity:node-detail", args=[node.pk])).content.decode()
    # then the check's result, time and reasons are there
    assert 'data-testid="node-health"' in page
    assert "failed</span>" in page and "row remapping failed" in page
    assert node.health_checked_at.strftime("%Y-%m-%d %H:%M:%S") in page
