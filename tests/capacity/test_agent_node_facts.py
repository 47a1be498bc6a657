"""A node's reach (provisioning/protocol.py F_ADDRESS, F_SSH_PORTS): the address its services are
reached at and its SSH port range, as its agent reports them at registration and in heartbeats."""

import pytest
from django.utils import timezone

from apps.capacity.models import Node
from apps.capacity.services.nodes import registration_token_create
from apps.catalog.models import Region
from provisioning.agent.loop import sources_simulated

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(demo_catalog):
    _, token = registration_token_create(region=Region.objects.get(code="us-east-1"), actor=None)
    return token


def agent_inventory(**reach) -> dict:
    """What the agent itself sends for a simulated 4xA100 host given --address / --ssh-ports."""
    return sources_simulated("4xA100-80GB,mig=3g.40gb*2", "sim-facts", "/", **reach).inventory_read().to_payload()


def register(api_client, token, inventory):
    return api_client.post("/api/v1/agent/register", {"token": token, "inventory": inventory}, format="json")


def test_a_node_registers_with_its_address_and_ssh_port_range(api_client, token):
    # Given an agent started with --address 127.0.1.2 --ssh-ports 22100-22199
    inventory = agent_inventory(address="127.0.1.2", ssh_ports=(22100, 22199))
    assert inventory["address"] == "127.0.1.2" and inventory["ssh_ports"] == [22100, 22199]

    # When it registers
    reply = register(api_client, token, inventory)

    # Then the node keeps both, next to the simulated label and its GPUs
    assert reply.status_code == 201, reply.content
    node = Node.objects.get(pk=reply.json()["node_id"])
    assert (node.address, node.ssh_port_first, node.ssh_port_last) == ("127.0.1.2", 22100, 22199)
    assert node.simulated and node.gpus.count() == 4


def test_a_heartbeat_changes_them_and_an_agent_without_them_reports_none(api_client, token):
    reply = register(api_client, token, agent_inventory(address="127.0.1.2", ssh_ports=(22100, 22199))).json()
    api_client.credentials(HTTP_AUTHORIZATION=f"Node {reply['node_id']}:{reply['credential']}")

    def heartbeat(seq, inventory):
        body = {"seq": seq, "sent_at": timezone.now().isoformat(), "inventory": inventory}
        return api_client.post("/api/v1/agent/heartbeat", body, format="json")

    # When the agent restarts with another range
    assert heartbeat(1, agent_inventory(address="127.0.1.2", ssh_ports=(23000, 23009))).status_code == 200
    node = Node.objects.get(pk=reply["node_id"])
    assert (node.address, node.ssh_port_first, node.ssh_port_last) == ("127.0.1.2", 23000, 23009)

    # When it restarts without either (or is an older agent that has no such fields)
    inventory = agent_inventory()
    del inventory["address"], inventory["ssh_ports"]
    assert heartbeat(2, inventory).status_code == 200
    node.refresh_from_db()
    assert (node.address, node.ssh_port_first, node.ssh_port_last) == (None, None, None)


@pytest.mark.parametrize(
    "field, value",
    [
        ("ssh_ports", [22099, 22000]),  # backwards
        ("ssh_ports", [80, 90]),  # privileged
        ("ssh_ports", [22000, 70000]),
        ("ssh_ports", [22000]),
        ("ssh_ports", [22000, 22001, 22002]),
        ("ssh_ports", "22000-22099"),  # the command line's form, not the wire's
        ("ssh_ports", [True, 22000]),
        ("address", "127.0.1"),
        ("address", "local-node"),
    ],
)
def test_a_bad_address_or_port_range_is_refused_and_registers_nothing(api_client, token, field, value):
    inventory = agent_inventory(address="127.0.1.2", ssh_ports=(22100, 22199))
    inventory[field] = value

    reply = register(api_client, token, inventory)

    assert reply.status_code == 400
    assert field in reply.content.decode()
    assert not Node.objects.exists()
