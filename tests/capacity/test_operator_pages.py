"""The operators' pages under /ops/: inventory, one node, node actions, registration tokens."""

from __future__ import annotations

import itertools

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.accounts.selectors import token_digest
from apps.capacity.models import Gpu, GpuHealth, MigDevice, Node, NodeEvent, NodeState, RegistrationToken
from tests.factories.accounts import UserFactory
from tests.factories.catalog import GpuModelFactory, RegionFactory

pytestmark = pytest.mark.django_db

INVENTORY = reverse("capacity:inventory")
TOKENS = reverse("capacity:registration-tokens")
_serial = itertools.count(1)


# Minimal inline builders: the capacity factories are another engineer's file.
def make_node(*, region=None, hostname=None, simulated=True, state=NodeState.READY, gpus=2, **fields) -> Node:
    n = next(_serial)
    node = Node.objects.create(
        region=region or RegionFactory(), hostname=hostname or f"gpu-host-{n:03d}", simulated=simulated,
        state=state, credential_hash=f"{n:064d}", **fields,
    )
    for index in range(gpus):
        Gpu.objects.create(
            node=node, index=index, uuid=f"GPU-SIM-{n:04d}-{index}", name="NVIDIA H100 80GB HBM3",
            memory_bytes=80 * 1024**3,
        )
    return node


@pytest.fixture
def staff(client):
    user = UserFactory(is_staff=True)
    client.force_login(user)
    return user


def node_url(node: Node) -> str:
    return reverse("capacity:node-detail", args=[node.pk])


def action_url(node: Node, action: str) -> str:
    return reverse("capacity:node-action", args=[node.pk, action])


# --- who may see it ----------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_log_in(client):
    node = make_node()
    for url in (INVENTORY, node_url(node), TOKENS):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_a_customer_gets_404_everywhere_under_ops(client):
    # given a signed-in user who is not staff, and a node
    client.force_login(UserFactory())
    node = make_node()

    # then every operators' page and action answers as if it did not exist
    for url in (INVENTORY, node_url(node), TOKENS):
        assert client.get(url).status_code == 404
    assert client.post(action_url(node, "cordon")).status_code == 404
    assert client.post(TOKENS, {"region": node.region.code, "ttl_hours": 24}).status_code == 404
    node.refresh_from_db()
    assert node.state == NodeState.READY and not RegistrationToken.objects.exists()


# --- inventory ---------------------------------------------------------------------------------


def test_staff_see_the_inventory_by_region_with_simulated_nodes_labelled(client, staff):
    # given a region with a real node (one GPU allocated half, busy) and a simulated one
    region = RegionFactory(code="eu-west-1", name="EU West")
    real = make_node(region=region, hostname="h100-a", simulated=False, gpus=2)
    Gpu.objects.filter(node=real, index=0).update(allocated_milli=500, utilization_pct=80)
    Gpu.objects.filter(node=real, index=1).update(utilization_pct=40)
    make_node(region=region, hostname="sim-01", simulated=True, state=NodeState.CORDONED, gpus=8)

    # when an operator opens the overview
    response = client.get(INVENTORY)

    # then the region totals and every node show, and only the simulated one says so
    html = response.content.decode()
    assert response.status_code == 200
    assert 'ws-connect="/ws/ops/inventory/"' in html
    assert "EU West" in html and "1 simulated" in html
    assert "0.5 / 10" in html  # allocated GPUs of the region, exactly
    assert "60%" in html  # average utilisation of the GPUs that reported
    assert "h100-a" in html and "sim-01" in html
    assert "8 × NVIDIA H100 80GB HBM3" in html
    rows = {row.split('data-hostname="')[1].split('"')[0]: row for row in html.split("<tr data-node=")[1:]}
    assert "simulated" in rows["sim-01"] and "simulated" not in rows["h100-a"]
    assert "cordoned" in rows["sim-01"] and "0.5 / 2" in rows["h100-a"]


def test_the_inventory_can_be_filtered_and_keeps_the_filter_on_its_socket(client, staff):
    eu, us = RegionFactory(code="eu-west-1"), RegionFactory(code="us-east-1")
    make_node(region=eu, hostname="eu-node")
    make_node(region=us, hostname="us-node", state=NodeState.MAINTENANCE)

    html = client.get(INVENTORY, {"region": "us-east-1", "state": "maintenance"}).content.decode()

    assert "us-node" in html and "eu-node" not in html
    assert 'ws-connect="/ws/ops/inventory/?region=us-east-1&amp;state=maintenance"' in html


def test_an_unknown_filter_is_a_message_not_an_error(client, staff):
    make_node(hostname="some-node")
    response = client.get(INVENTORY, {"region": "mars-1"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Unknown region &#x27;mars-1&#x27;. This filter is ignored." in html and "some-node" in html


def test_the_overview_costs_the_same_queries_for_2_or_20_nodes(client, staff):
    # given 2 nodes in 2 regions with GPUs, MIG devices and telemetry
    regions = [RegionFactory(), RegionFactory()]

    def add_nodes(count: int) -> None:
        for i in range(count):
            node = make_node(region=regions[i % 2], gpus=4, simulated=i % 2 == 0)
            Gpu.objects.filter(node=node).update(utilization_pct=50, allocated_milli=250)

    add_nodes(2)
    with CaptureQueriesContext(connection) as few:
        assert client.get(INVENTORY).status_code == 200

    # when there are 20
    add_nodes(18)
    with CaptureQueriesContext(connection) as many:
        html = client.get(INVENTORY).content.decode()

    # then the page costs no more queries
    assert html.count("<tr data-node=") == 20
    assert len(many) <= len(few), [q["sql"] for q in many.captured_queries]
    # (the nodes are a paginated table: its page and its count)
    assert len(many) <= 9, [q["sql"] for q in many.captured_queries]


# --- one node ----------------------------------------------------------------------------------


def test_staff_see_a_node_with_its_gpus_telemetry_mig_and_events(client, staff):
    # given a simulated node with a degraded MIG GPU, telemetry and an earlier event
    GpuModelFactory(nvml_name="NVIDIA H100 80GB HBM3")
    node = make_node(hostname="sim-07", gpus=2)
    gpu = node.gpus.get(index=1)
    Gpu.objects.filter(pk=gpu.pk).update(
        health=GpuHealth.DEGRADED, health_reasons=["XID 79: fell off the bus"], mig_enabled=True,
        utilization_pct=73, memory_used_bytes=40 * 1024**3, temperature_c=61, power_w=412.4, allocated_milli=500,
    )
    MigDevice.objects.create(gpu=gpu, uuid="MIG-SIM-1", profile="3g.40gb", memory_bytes=40 * 1024**3)
    NodeEvent.objects.create(node=node, from_state="ready", to_state="cordoned", reason="rack 4 power work")

    # when an operator opens its page
    response = client.get(node_url(node))

    # then the GPUs, their telemetry, MIG devices, health reasons and the event log show
    html = response.content.decode()
    assert response.status_code == 200
    assert f'ws-connect="/ws/ops/nodes/{node.pk}/"' in html
    assert "simulated" in html and "sim-07" in html
    assert "GPU-SIM-" in html and "NVIDIA H100 80GB HBM3" in html
    assert "XID 79: fell off the bus" in html and "degraded" in html
    assert "3g.40gb" in html
    assert "73%" in html and "40.0\xa0GB" in html and "61 °C" in html and "412 W" in html
    assert "50%" in html and "0.5 of 2 GPUs" in html
    assert "rack 4 power work" in html
    # a ready node offers cordon, drain and maintenance, not uncordon
    assert 'data-action="cordon"' in html and 'data-action="uncordon"' not in html


def test_an_unknown_node_is_404(client, staff):
    assert client.get(reverse("capacity:node-detail", args=["00000000-0000-0000-0000-000000000000"])).status_code == 404


@pytest.mark.parametrize(
    ("start", "action", "end"),
    [
        (NodeState.READY, "cordon", NodeState.CORDONED),
        (NodeState.READY, "drain", NodeState.DRAINING),
        (NodeState.CORDONED, "uncordon", NodeState.READY),
        (NodeState.READY, "maintenance", NodeState.MAINTENANCE),
    ],
)
def test_operator_actions_move_the_node_and_log_who_and_why(client, staff, start, action, end):
    node = make_node(state=start)

    response = client.post(action_url(node, action), {"reason": "swap PSU"}, follow=True)

    node.refresh_from_db()
    assert response.status_code == 200
    assert node.state == end
    event = NodeEvent.objects.get(node=node)
    assert (event.from_state, event.to_state, event.reason, event.actor) == (start, end, "swap PSU", staff)
    assert f"is now {end}" in response.content.decode()


def test_an_action_without_a_reason_uses_the_services_default(client, staff):
    node = make_node()
    client.post(action_url(node, "cordon"))
    assert NodeEvent.objects.get(node=node).reason == "cordoned by an operator"


def test_an_invalid_transition_is_a_message_not_an_error(client, staff):
    # given a node in maintenance, which cannot be drained
    node = make_node(state=NodeState.MAINTENANCE)

    response = client.post(action_url(node, "drain"), follow=True)

    html = response.content.decode()
    assert response.status_code == 200
    assert "Drain refused: A maintenance node cannot become draining." in html
    node.refresh_from_db()
    assert node.state == NodeState.MAINTENANCE and not NodeEvent.objects.exists()


def test_actions_are_post_only_and_unknown_ones_are_404(client, staff):
    node = make_node()
    assert client.get(action_url(node, "cordon")).status_code == 405
    assert client.post(action_url(node, "reboot")).status_code == 404
    node.refresh_from_db()
    assert node.state == NodeState.READY


# --- registration tokens -----------------------------------------------------------------------


def test_a_token_is_shown_once_with_the_agent_command_and_stored_hashed(client, staff, settings):
    # given a region and the portal's public address
    settings.PORTAL_BASE_URL = "https://portal.example/"
    RegionFactory(code="eu-west-1")

    # when an operator creates a token
    response = client.post(TOKENS, {"region": "eu-west-1", "note": "rack 7", "ttl_hours": 48})

    # then the page shows it once with the exact command line, and the database has only its digest
    html = response.content.decode()
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    token = html.split('data-testid="token">')[1].split("<")[0]
    assert token.startswith("ncr_")
    assert f"neocloud-agent --portal https://portal.example --token {token}" in html
    record = RegistrationToken.objects.get()
    assert record.token_hash == token_digest(token) and record.created_by == staff and record.note == "rack 7"
    assert 47.9 < (record.expires_at - record.created_at).total_seconds() / 3600 <= 48
    stored = " ".join(str(value) for value in RegistrationToken.objects.values().get().values())
    assert token not in stored

    # and a reload lists the token without its secret
    html = client.get(TOKENS).content.decode()
    assert token not in html and "rack 7" in html and "unused" in html


def test_a_bad_token_request_is_a_form_error(client, staff):
    RegionFactory(code="eu-west-1")
    response = client.post(TOKENS, {"region": "eu-west-1", "ttl_hours": 0})
    assert response.status_code == 400
    assert "errorlist" in response.content.decode()
    assert not RegistrationToken.objects.exists()


def test_a_used_token_links_to_its_simulated_node(client, staff):
    node = make_node(hostname="sim-42", simulated=True)
    RegistrationToken.objects.create(
        token_hash="x" * 64, region=node.region, expires_at=timezone.now(), used_at=timezone.now(), node=node
    )
    html = client.get(TOKENS).content.decode()
    assert "sim-42" in html and "used" in html and "simulated" in html
