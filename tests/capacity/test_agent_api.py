"""The node agents' API: registration, heartbeats with inventory, telemetry, and bad input."""

import copy
import json
from pathlib import Path

import pytest
from django.utils import timezone

from apps.capacity.models import Gpu, GpuHealth, Node, NodeState, RegistrationToken
from apps.capacity.services.nodes import registration_token_create
from apps.catalog.models import Region

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parents[1] / "agent" / "fixtures"
H100 = json.loads((FIXTURES / "nvml_h100_capture.json").read_text())
TWO_H200 = json.loads((FIXTURES / "nvml_2xh200_capture.json").read_text())


@pytest.fixture
def token(demo_catalog):
    _, token = registration_token_create(region=Region.objects.get(code="us-east-1"), actor=None)
    return token


def register(api_client, token, inventory):
    return api_client.post("/api/v1/agent/register", {"token": token, "inventory": inventory}, format="json")


@pytest.fixture
def node_client(api_client, token):
    reply = register(api_client, token, TWO_H200["inventory_payload"]).json()
    api_client.credentials(HTTP_AUTHORIZATION=f"Node {reply['node_id']}:{reply['credential']}")
    api_client.node = Node.objects.get(pk=reply["node_id"])
    return api_client


def heartbeat(client, seq, inventory=None):
    body = {"seq": seq, "sent_at": timezone.now().isoformat(), "inventory": inventory}
    return client.post("/api/v1/agent/heartbeat", body, format="json")


def test_a_real_h100_inventory_registers_and_maps_to_the_catalog_model(api_client, token):
    reply = register(api_client, token, H100["inventory_payload"])

    assert reply.status_code == 201
    node = Node.objects.get(pk=reply.json()["node_id"])
    gpu = node.gpus.get()
    assert gpu.uuid == H100["inventory_payload"]["gpus"][0]["uuid"]
    assert gpu.gpu_model.slug.startswith("h100") and gpu.health == GpuHealth.OK
    assert not node.simulated and node.state == NodeState.READY
    assert node.driver_version == "580.159.04" and node.cuda_version == "13.0"
    stored = Node.objects.filter(pk=node.pk).values().get()
    assert reply.json()["credential"] not in json.dumps(stored, default=str)


def test_a_token_registers_one_node_only(api_client, token):
    assert register(api_client, token, H100["inventory_payload"]).status_code == 201
    again = register(api_client, token, TWO_H200["inventory_payload"])
    assert again.status_code == 401 and "ask an operator" in again.json()["detail"]
    assert Node.objects.count() == 1


def test_an_expired_token_is_refused(api_client, token):
    RegistrationToken.objects.update(expires_at=timezone.now())
    assert register(api_client, token, H100["inventory_payload"]).status_code == 401
    assert not Node.objects.exists()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda inv: inv["gpus"][0].update(uuid="not-a-uuid"),
        lambda inv: inv["gpus"][0].update(memory_bytes=-1),
        lambda inv: inv["gpus"][0].update(health="on fire"),
        lambda inv: inv.update(gpus=[inv["gpus"][0], inv["gpus"][0]]),
        lambda inv: inv.pop("hostname"),
        lambda inv: inv.update(gpus="all of them"),
    ],
)
def test_malformed_inventory_is_400_and_corrupts_nothing(node_client, mutate):
    inventory = copy.deepcopy(TWO_H200["inventory_payload"])
    mutate(inventory)
    before = list(Gpu.objects.order_by("uuid").values("uuid", "health", "memory_bytes", "node_id"))

    response = heartbeat(node_client, 10**15, inventory)

    assert response.status_code == 400 and response.json()
    assert list(Gpu.objects.order_by("uuid").values("uuid", "health", "memory_bytes", "node_id")) == before
    assert Node.objects.get(pk=node_client.node.pk).last_seq == 0


def test_an_oversized_report_is_413(node_client, settings):
    settings.CAPACITY_AGENT_MAX_BODY_BYTES = 2048
    inventory = copy.deepcopy(TWO_H200["inventory_payload"])
    inventory["hostname"] = "x" * 200
    inventory["gpus"][0]["health_reasons"] = ["y" * 190] * 15
    response = heartbeat(node_client, 5, inventory)
    assert response.status_code == 413 and "too large" in response.json()["detail"]


def test_a_stale_heartbeat_never_overwrites_a_newer_one(node_client):
    newer = copy.deepcopy(TWO_H200["inventory_payload"])
    newer["gpus"][1]["health"] = "degraded"
    newer["gpus"][1]["health_reasons"] = ["uncorrected ECC errors"]
    assert heartbeat(node_client, 200, newer).status_code == 200

    stale = heartbeat(node_client, 100, TWO_H200["inventory_payload"])

    assert stale.status_code == 409 and "Stale" in stale.json()["detail"]
    assert Gpu.objects.get(uuid=newer["gpus"][1]["uuid"]).health == GpuHealth.DEGRADED
    assert Node.objects.get(pk=node_client.node.pk).last_seq == 200


def test_inventory_changes_update_the_source_of_truth(node_client):
    inventory = copy.deepcopy(TWO_H200["inventory_payload"])
    gone = inventory["gpus"].pop(0)
    new = {**copy.deepcopy(inventory["gpus"][0]), "uuid": "GPU-00000000-1111-2222-3333-444444444444", "index": 2}
    inventory["gpus"].append(new)

    assert heartbeat(node_client, 7, inventory).status_code == 200

    assert Gpu.objects.get(uuid=gone["uuid"]).health == GpuHealth.MISSING
    assert Gpu.objects.get(uuid=new["uuid"]).node_id == node_client.node.pk
    assert Gpu.objects.filter(node=node_client.node).count() == 3


def test_telemetry_is_stored_and_stale_telemetry_refused(node_client):
    telemetry = copy.deepcopy(TWO_H200["telemetry_payload"])
    telemetry["gpus"][0]["utilization_pct"] = 87
    assert (
        node_client.post("/api/v1/agent/telemetry", {"seq": 50, "telemetry": telemetry}, format="json").status_code
        == 202
    )
    gpu = Gpu.objects.get(uuid=telemetry["gpus"][0]["uuid"])
    assert gpu.utilization_pct == 87 and gpu.telemetry_at is not None

    telemetry["gpus"][0]["utilization_pct"] = 3
    late = node_client.post("/api/v1/agent/telemetry", {"seq": 49, "telemetry": telemetry}, format="json")
    assert late.status_code == 409
    assert Gpu.objects.get(pk=gpu.pk).utilization_pct == 87


@pytest.mark.parametrize("header", ["Node nope", "Node 00000000-0000-0000-0000-000000000000:x", "Bearer abc"])
def test_agent_endpoints_need_a_node_credential(api_client, header):
    api_client.credentials(HTTP_AUTHORIZATION=header)
    response = heartbeat(api_client, 1)
    assert response.status_code in (401, 403) and response.json()["detail"]


def test_a_heartbeat_brings_a_down_node_back(node_client):
    node = node_client.node
    Node.objects.filter(pk=node.pk).update(state=NodeState.DOWN)
    assert heartbeat(node_client, 11).status_code == 200
    node.refresh_from_db()
    assert node.state == NodeState.READY
    assert node.events.filter(from_state=NodeState.DOWN, to_state=NodeState.READY).exists()
