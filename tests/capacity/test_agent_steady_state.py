"""The agents' most frequent reports stay cheap and correct: a steady-state heartbeat and a telemetry
report are one statement each behind the credential check; an inventory that did not change writes
nothing; the seq compare-and-set still refuses stale reports; bad input still changes nothing."""

import copy
import json
from pathlib import Path
from unittest import mock

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from apps.capacity.models import Gpu, GpuHealth, MigDevice, Node
from apps.capacity.services.nodes import registration_token_create
from apps.capacity.services.reports import node_heartbeat_apply, node_telemetry_apply
from apps.catalog.models import Region
from provisioning.agent.inventory import inventory_from_nvml
from provisioning.agent.simulate import simulated_inventory_raw, simulation_spec_parse

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parents[1] / "agent" / "fixtures"
TWO_H200 = json.loads((FIXTURES / "nvml_2xh200_capture.json").read_text())
HOST = {"hostname": "mig-host", "cpus": 64, "ram_bytes": 2**40, "disk_bytes": 2**42}
MIG_INVENTORY = inventory_from_nvml(
    simulated_inventory_raw(simulation_spec_parse("2xH100-80GB,mig=3g.40gb+2g.20gb+1g.10gb*2"), "mig-host"), HOST
).to_payload()


def _register(api_client, inventory) -> Node:
    _, token = registration_token_create(region=Region.objects.get(code="us-east-1"), actor=None)
    reply = api_client.post("/api/v1/agent/register", {"token": token, "inventory": inventory}, format="json")
    assert reply.status_code == 201
    body = reply.json()
    api_client.credentials(HTTP_AUTHORIZATION=f"Node {body['node_id']}:{body['credential']}")
    return Node.objects.get(pk=body["node_id"])


@pytest.fixture
def node_client(api_client, demo_catalog):
    api_client.node = _register(api_client, TWO_H200["inventory_payload"])
    return api_client


@pytest.fixture
def mig_client(api_client, demo_catalog):
    api_client.node = _register(api_client, MIG_INVENTORY)
    return api_client


def heartbeat(client, seq, inventory=None):
    body = {"seq": seq, "sent_at": timezone.now().isoformat(), "inventory": inventory}
    return client.post("/api/v1/agent/heartbeat", body, format="json")


def telemetry(client, seq, payload):
    return client.post("/api/v1/agent/telemetry", {"seq": seq, "telemetry": payload}, format="json")


def row_versions(model) -> dict[str, str]:
    """uuid -> ctid, where the row's current version lies. Every UPDATE writes a new version
    elsewhere (even a HOT one), so an unchanged ctid means the row was not written. (Not xmin: the
    whole test is one transaction.)"""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT uuid, ctid::text FROM {model._meta.db_table}")
        return dict(cursor.fetchall())


# --- steady state ---------------------------------------------------------------------------------


def test_a_steady_state_heartbeat_is_the_credential_check_and_one_statement(
    node_client, django_assert_max_num_queries
):
    # Credential check and the seq compare-and-set (with its durability setting, one round trip).
    # The desired workloads are not read: they have one channel, the long-poll.
    with django_assert_max_num_queries(2):
        response = heartbeat(node_client, 10)

    assert response.status_code == 200
    assert response.json() == {"heartbeat_interval_s": 10}
    node = Node.objects.get(pk=node_client.node.pk)
    assert node.last_seq == 10 and node.last_heartbeat_at is not None


def test_the_heartbeat_carries_no_desired_state(node_client):
    # Given a node; when it heartbeats, the desired workloads are neither read nor sent
    calls = []
    with (
        mock.patch("apps.instances.selectors.node_desired_version", lambda **_: calls.append("version") or 7),
        mock.patch("apps.instances.selectors.node_desired_workloads", lambda **_: calls.append("list") or []),
    ):
        reply = heartbeat(node_client, 10)

    assert calls == []
    assert "desired_workloads" not in reply.json() and "workloads_version" not in reply.json()


def test_a_telemetry_report_is_the_credential_check_and_one_statement(node_client, django_assert_max_num_queries):
    payload = copy.deepcopy(TWO_H200["telemetry_payload"])
    payload["gpus"][1]["utilization_pct"] = 64
    payload["gpus"][1]["power_w"] = None

    with django_assert_max_num_queries(2):
        response = telemetry(node_client, 20, payload)

    assert response.status_code == 202 and response.json() == {"gpus_updated": 2}
    gpu = Gpu.objects.get(uuid=payload["gpus"][1]["uuid"])
    assert (
        gpu.utilization_pct == 64 and gpu.power_w is None and gpu.temperature_c == payload["gpus"][1]["temperature_c"]
    )
    assert gpu.telemetry_at.isoformat().startswith(payload["collected_at"][:19])
    assert Node.objects.get(pk=node_client.node.pk).last_telemetry_seq == 20


def test_the_fast_paths_commit_without_waiting_for_the_wal_flush(node_client):
    def synchronous_commit() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return cursor.fetchone()[0]

    # The test runs inside one transaction, so SET LOCAL stays visible after the call.
    assert synchronous_commit() == "on"
    node_heartbeat_apply(node=node_client.node, seq=5, inventory=None)
    assert synchronous_commit() == "off"


# --- seq compare-and-set --------------------------------------------------------------------------


def test_a_stale_steady_state_heartbeat_is_refused_and_changes_nothing(node_client):
    assert heartbeat(node_client, 300).status_code == 200
    before = Node.objects.values("last_seq", "last_heartbeat_at").get(pk=node_client.node.pk)

    for seq in (300, 299, 1):
        response = heartbeat(node_client, seq)
        assert response.status_code == 409 and "Stale" in response.json()["detail"]

    assert Node.objects.values("last_seq", "last_heartbeat_at").get(pk=node_client.node.pk) == before


def test_a_stale_heartbeat_with_a_changed_inventory_applies_none_of_it(node_client):
    assert heartbeat(node_client, 300).status_code == 200
    changed = copy.deepcopy(TWO_H200["inventory_payload"])
    changed["gpus"][0]["health"] = "failed"
    changed["driver_version"] = "999.1"
    versions = row_versions(Gpu)

    with mock.patch("apps.capacity.services.inventory.inventory_changed_on_commit") as announced:
        assert heartbeat(node_client, 299, changed).status_code == 409

    assert row_versions(Gpu) == versions
    assert Node.objects.get(pk=node_client.node.pk).driver_version == TWO_H200["inventory_payload"]["driver_version"]
    announced.assert_not_called()


def test_stale_telemetry_writes_no_gpu_row(node_client):
    payload = copy.deepcopy(TWO_H200["telemetry_payload"])
    assert telemetry(node_client, 50, payload).status_code == 202
    versions = row_versions(Gpu)

    payload["gpus"][0]["utilization_pct"] = 99
    for seq in (50, 49):
        assert telemetry(node_client, seq, payload).status_code == 409

    assert row_versions(Gpu) == versions
    with pytest.raises(Exception, match="Stale telemetry"):
        node_telemetry_apply(node=node_client.node, seq=1, telemetry={"collected_at": timezone.now(), "gpus": []})


def test_telemetry_only_touches_the_reporting_nodes_gpus(node_client):
    other = _register(APIClient(), MIG_INVENTORY)
    foreign_uuid = other.gpus.order_by("index").first().uuid
    payload = copy.deepcopy(TWO_H200["telemetry_payload"])
    payload["gpus"].append({**payload["gpus"][0], "uuid": foreign_uuid, "utilization_pct": 100})

    response = telemetry(node_client, 7, payload)

    assert response.status_code == 202 and response.json() == {"gpus_updated": 2}
    assert Gpu.objects.get(uuid=foreign_uuid).utilization_pct is None


# --- inventory: unchanged is not re-applied, changed is -------------------------------------------


def test_an_unchanged_inventory_writes_nothing_and_announces_nothing(node_client, django_assert_max_num_queries):
    versions = row_versions(Gpu)
    node_facts = Node.objects.values("hostname", "cpus", "ram_bytes", "driver_version").get(pk=node_client.node.pk)

    with (
        mock.patch("apps.capacity.services.inventory.inventory_changed_on_commit") as announced,
        django_assert_max_num_queries(11),
    ):
        response = heartbeat(node_client, 10, TWO_H200["inventory_payload"])

    assert response.status_code == 200
    assert row_versions(Gpu) == versions
    assert Node.objects.values("hostname", "cpus", "ram_bytes", "driver_version").get(pk=node_client.node.pk) == (
        node_facts
    )
    assert Node.objects.get(pk=node_client.node.pk).last_seq == 10
    announced.assert_not_called()


def test_a_changed_gpu_is_written_alone_and_announced(node_client):
    versions = row_versions(Gpu)
    changed = copy.deepcopy(TWO_H200["inventory_payload"])
    changed["gpus"][1]["health"] = "degraded"
    changed["gpus"][1]["health_reasons"] = ["uncorrected ECC errors"]
    untouched, degraded = changed["gpus"][0]["uuid"], changed["gpus"][1]["uuid"]

    with mock.patch("apps.capacity.services.inventory.inventory_changed_on_commit") as announced:
        assert heartbeat(node_client, 10, changed).status_code == 200

    after = row_versions(Gpu)
    assert after[untouched] == versions[untouched] and after[degraded] != versions[degraded]
    gpu = Gpu.objects.get(uuid=degraded)
    assert gpu.health == GpuHealth.DEGRADED and gpu.health_reasons == ["uncorrected ECC errors"]
    announced.assert_called_once_with(node_id=node_client.node.pk)


def test_changed_node_facts_alone_are_applied(node_client):
    versions = row_versions(Gpu)
    changed = copy.deepcopy(TWO_H200["inventory_payload"])
    changed["driver_version"] = "590.1"
    changed["hostname"] = "vm-renamed"

    with mock.patch("apps.capacity.services.inventory.inventory_changed_on_commit") as announced:
        assert heartbeat(node_client, 10, changed).status_code == 200

    node = Node.objects.get(pk=node_client.node.pk)
    assert node.driver_version == "590.1" and node.hostname == "vm-renamed"
    assert row_versions(Gpu) == versions
    assert set(node.capacity.values_list("hostname", flat=True)) == {"vm-renamed"}
    announced.assert_called_once()


def test_a_gpu_changed_behind_the_agents_back_is_repaired_by_the_same_report(node_client):
    # The stored rows are the comparison, not a remembered digest: the same report still corrects them.
    uuid = TWO_H200["inventory_payload"]["gpus"][0]["uuid"]
    Gpu.objects.filter(uuid=uuid).update(health=GpuHealth.FAILED, memory_bytes=1)

    assert heartbeat(node_client, 10, TWO_H200["inventory_payload"]).status_code == 200

    gpu = Gpu.objects.get(uuid=uuid)
    assert gpu.health == GpuHealth.OK and gpu.memory_bytes == TWO_H200["inventory_payload"]["gpus"][0]["memory_bytes"]


def test_mig_devices_unchanged_are_not_rewritten_and_changes_are_applied(mig_client):
    devices = row_versions(MigDevice)
    assert len(devices) == 2 * 4 and MigDevice.objects.filter(present=True).count() == 8

    with mock.patch("apps.capacity.services.inventory.inventory_changed_on_commit") as announced:
        assert heartbeat(mig_client, 10, MIG_INVENTORY).status_code == 200
    assert row_versions(MigDevice) == devices
    announced.assert_not_called()

    changed = copy.deepcopy(MIG_INVENTORY)
    removed = changed["gpus"][0]["mig_devices"].pop()
    changed["gpus"][1]["mig_devices"][0]["memory_bytes"] += 1
    resized = changed["gpus"][1]["mig_devices"][0]["uuid"]
    added = {**changed["gpus"][1]["mig_devices"][1], "uuid": "MIG-SIM-new-device"}
    changed["gpus"][1]["mig_devices"].append(added)

    assert heartbeat(mig_client, 11, changed).status_code == 200

    assert not MigDevice.objects.get(uuid=removed["uuid"]).present
    assert MigDevice.objects.get(uuid=resized).memory_bytes == changed["gpus"][1]["mig_devices"][0]["memory_bytes"]
    new = MigDevice.objects.get(uuid="MIG-SIM-new-device")
    assert new.present and new.gpu.uuid == changed["gpus"][1]["uuid"]
    after = row_versions(MigDevice)
    untouched = set(devices) - {removed["uuid"], resized}
    assert all(after[uuid] == devices[uuid] for uuid in untouched)

    # The removed device comes back: present again, on its GPU.
    assert heartbeat(mig_client, 12, MIG_INVENTORY).status_code == 200
    assert MigDevice.objects.get(uuid=removed["uuid"]).present


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t["gpus"][0].update(utilization_pct=101),
        lambda t: t["gpus"][0].update(uuid="not-a-gpu"),
        lambda t: t["gpus"][0].update(power_w="hot"),
        lambda t: t.pop("collected_at"),
        lambda t: t.update(gpus=[t["gpus"][0]] * 65),
    ],
)
def test_malformed_telemetry_is_400_and_changes_nothing(node_client, mutate):
    payload = copy.deepcopy(TWO_H200["telemetry_payload"])
    mutate(payload)
    versions = row_versions(Gpu)

    response = telemetry(node_client, 10, payload)

    assert response.status_code == 400 and response.json()
    assert row_versions(Gpu) == versions
    assert Node.objects.get(pk=node_client.node.pk).last_telemetry_seq == 0


def test_an_oversized_telemetry_report_is_413_and_changes_nothing(node_client, settings):
    settings.CAPACITY_AGENT_MAX_BODY_BYTES = 256
    versions = row_versions(Gpu)

    response = telemetry(node_client, 10, TWO_H200["telemetry_payload"])

    assert response.status_code == 413
    assert row_versions(Gpu) == versions
    assert Node.objects.get(pk=node_client.node.pk).last_telemetry_seq == 0
