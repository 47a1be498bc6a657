"""Bare metal (bare_metal offerings) through the API and the agent's reports, on real PostgreSQL:
a launch holds every GPU of one whole node (each free and healthy, the node READY, of the flavor's
size), never a node whose last health check failed nor one still holding its last tenant's data;
a failed hand-over check cordons the node and fails the launch with a message for its owner; the
wipe the agent reports is what lets the node be placed again."""

import shutil
import subprocess
from uuid import UUID

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from apps.accounts.selectors import token_digest
from apps.accounts.ssh_keys import ssh_key_add
from apps.capacity.models import Allocation, AllocationState, Gpu, GpuHealth, Node, NodeEvent, NodeState
from apps.capacity.services.nodes import node_state_transition
from apps.catalog.models import Flavor, Image, Region
from apps.instances.models import Instance, InstanceState
from apps.instances.selectors import node_desired_workloads
from apps.instances.services.placement import instance_schedule
from apps.instances.services.queue import instances_queue_place
from apps.instances.services.reconcile import instances_reconcile
from tests.factories.accounts import UserFactory
from tests.factories.capacity import node_with_gpus

pytestmark = pytest.mark.django_db
S = InstanceState
HOST_KEY = "ssh-ed25519 " + "A" * 68
ENDPOINT = {"host": "10.0.0.7", "port": 22001, "user": "nc-0123456789ab", "host_key": HOST_KEY}
FAILED_CHECK = {
    "checked_at": "2026-12-07T21:00:00.000+00:00",
    "passed": False,
    "simulated": True,
    "cuda_ran": False,
    "cuda_note": "simulated host: only the simulated NVML facts were checked",
    "reasons": ["GPU 0 (GPU-SIM-1): row remapping failed", "GPU 0 (GPU-SIM-1): 2 uncorrected ECC errors"],
}


@pytest.fixture
def flavor(demo_catalog):
    return Flavor.objects.get(offering__kind="bare_metal", slug="8x-h100")


@pytest.fixture
def region(demo_catalog):
    return Region.objects.get(code="us-east-1")


@pytest.fixture
def key(user, tmp_path):
    assert shutil.which("ssh-keygen"), "ssh-keygen is needed (Debian: apt-get install openssh-client)"
    path = tmp_path / "laptop"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "laptop", "-f", str(path)], check=True)
    return ssh_key_add(user=user, name="laptop", public_key=path.with_suffix(".pub").read_text())


@pytest.fixture
def launch(api_client, user, org, flavor, key):
    image = Image.objects.filter(offering_kinds__contains=["bare_metal"]).first()
    api_client.force_login(user)

    def post(name="metal-1", **body):
        payload = {"flavor": "bare-metal/8x-h100", "image": image.slug, "region": "us-east-1", "ssh_keys": [key.pk]}
        return api_client.post(
            f"/api/v1/organizations/{org.slug}/instances/", {**payload, "name": name, **body}, format="json"
        )

    return post


def agent_for(node):
    Node.objects.filter(pk=node.pk).update(credential_hash=token_digest("cred"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Node {node.pk}:cred")

    def post(instance_id, seq, state, **body):
        return client.post(
            f"/api/v1/agent/workloads/{instance_id}/status", {"seq": seq, "state": state, **body}, format="json"
        )

    return post


def running(launch, agent, name="metal-1"):
    """A bare-metal instance placed, handed to its node and reported running by its agent."""
    reply = launch(name=name)
    assert reply.status_code == 201, reply.json()
    instance = instance_schedule(instance_id=reply.json()["id"])
    assert agent(instance.pk, 1, "starting").status_code == 202
    assert agent(instance.pk, 2, "running", **ENDPOINT).status_code == 202
    return Instance.objects.get(pk=instance.pk)


def test_a_launch_takes_the_one_node_whose_gpus_are_all_free_and_healthy(launch, region, flavor, key):
    # Given three H100 nodes: one with a GPU held, one with an unhealthy GPU, one of only 4 GPUs,
    # and one whole free 8-GPU node
    model = flavor.gpu_model
    busy, sick, small = (node_with_gpus(region, model, n=n, hostname=h) for n, h in ((8, "a"), (8, "b"), (4, "c")))
    free = node_with_gpus(region, model, n=8, hostname="d")
    Gpu.objects.filter(node=busy, index=3).update(allocated_milli=1000)
    Gpu.objects.filter(node=sick, index=5).update(health=GpuHealth.FAILED)

    # When a bare-metal node is launched
    reply = launch()

    # Then it holds every GPU of the free node, in one allocation, and its agent gets all eight
    assert reply.status_code == 201, reply.json()
    instance = instance_schedule(instance_id=reply.json()["id"])
    assert instance.state == S.SCHEDULED and instance.node_id == free.pk
    allocation = Allocation.objects.get(pk=instance.allocation_id)
    assert allocation.node_id == free.pk and allocation.gpu_milli == 8000
    [spec] = node_desired_workloads(node_id=free.pk)
    assert spec["kind"] == "bare_metal" and spec["authorized_keys"] == [key.public_key]
    assert sorted(spec["gpus"]) == sorted(Gpu.objects.filter(node=free).values_list("uuid", flat=True))
    assert not Allocation.objects.filter(node__in=[busy, sick, small]).exists()


def test_no_whole_node_free_is_a_409_with_the_availability_and_nothing_is_made(launch, region, flavor):
    node = node_with_gpus(region, flavor.gpu_model, n=8)
    Gpu.objects.filter(node=node, index=0).update(health=GpuHealth.FAILED)

    reply = launch()

    assert reply.status_code == 409, reply.json()
    assert reply.json()["reason"] == "no_capacity"
    assert {r["region"]: r["available"] for r in reply.json()["availability"]}["us-east-1"] == 0
    assert not Instance.objects.exists() and not Allocation.objects.exists()


def test_a_node_whose_last_health_check_failed_is_never_placed(launch, region, flavor):
    # Given a node an operator returned to service although its last stored check failed
    node = node_with_gpus(region, flavor.gpu_model, n=8)
    Node.objects.filter(pk=node.pk).update(health_passed=False, health_reasons=["GPU 0: row remapping failed"])

    assert launch().status_code == 409
    assert not Allocation.objects.exists()

    # When its next check passes, it is placed again
    Node.objects.filter(pk=node.pk).update(health_passed=True, health_reasons=[])
    assert launch().status_code == 201


def test_a_failed_hand_over_check_cordons_the_node_and_fails_the_launch_with_the_reason(launch, region, flavor):
    node = node_with_gpus(region, flavor.gpu_model, n=8)
    agent = agent_for(node)
    instance = instance_schedule(instance_id=launch().json()["id"])
    assert agent(instance.pk, 1, "starting").status_code == 202

    # When the agent's check before the hand-over fails
    wiped = {"account": None, "home": f"/var/lib/neocloud/{instance.pk}/work", "files": 0}
    reply = agent(
        instance.pk, 2, "failed", reason="the node failed its health check", health_check=FAILED_CHECK, wiped=wiped
    )

    # Then the node is cordoned with the check's reason, as a failed periodic check would be
    assert reply.status_code == 202, reply.content
    node.refresh_from_db()
    assert node.state == NodeState.CORDONED and node.health_passed is False
    assert node.state_reason == "health check failed: GPU 0 (GPU-SIM-1): row remapping failed (+1 more)"
    assert NodeEvent.objects.filter(node=node, to_state=NodeState.CORDONED).count() == 1
    # And the owner is told, the capacity is back, and no wipe is owed (nothing was handed over)
    instance.refresh_from_db()
    assert instance.state == S.FAILED
    assert instance.state_reason == (
        "The node failed its health check before hand-over (GPU 0 (GPU-SIM-1): row remapping failed (+1 more)); "
        "it was taken out of service and you were not given it. Nothing is billed; launch again to get another node."
    )
    assert Allocation.objects.get(pk=instance.allocation_id).state == AllocationState.RELEASED
    assert node.wipe_pending_instance is None
    assert not NodeEvent.objects.filter(node=node, reason__startswith="Tenant data").exists()


def test_the_wipe_mark_blocks_placement_until_the_agent_reports_the_wipe(launch, api_client, org, region, flavor):
    node = node_with_gpus(region, flavor.gpu_model, n=8)
    agent = agent_for(node)
    instance = running(launch, agent)

    # When it is stopped and the agent's stopped report says nothing was wiped yet
    assert api_client.post(f"/api/v1/organizations/{org.slug}/instances/{instance.pk}/stop/").status_code == 200
    assert agent(instance.pk, 3, "stopped").status_code == 202

    # Then its capacity is released but the node waits for the wipe: no launch is placed on it
    instance.refresh_from_db()
    assert instance.state == S.STOPPED
    assert Allocation.objects.get(pk=instance.allocation_id).state == AllocationState.RELEASED
    node.refresh_from_db()
    assert node.wipe_pending_instance == instance.pk and node.wipe_pending_since is not None
    assert launch(name="metal-2").status_code == 409
    one_gpu = launch(name="gpu-1", flavor="gpu-instances/1x-h100")
    assert one_gpu.status_code == 409, one_gpu.json()
    # and the operators' node page says what it waits for
    operator = Client()
    operator.force_login(UserFactory(is_staff=True))
    page = operator.get(reverse("capacity:node-detail", args=[node.pk])).content.decode()
    assert 'data-testid="node-wipe-pending"' in page and str(instance.pk) in page

    # When the agent reports the wipe
    wiped = {"account": "nc-0123456789ab", "home": f"/var/lib/neocloud/{instance.pk}/work", "files": 3}
    assert agent(instance.pk, 4, "stopped", wiped=wiped).status_code == 202

    # Then the node says so in an event and is placed again
    node.refresh_from_db()
    assert node.wipe_pending_instance is None and node.state == NodeState.READY
    assert 'data-testid="node-wipe-pending"' not in operator.get(reverse("capacity:node-detail", args=[node.pk])).text
    event = NodeEvent.objects.get(node=node, reason__startswith="Tenant data")
    assert (
        event.reason == f"Tenant data of instance {instance.pk} wiped: account nc-0123456789ab, home, 3 files removed"
    )
    assert event.from_state == event.to_state == NodeState.READY
    assert launch(name="metal-2").status_code == 201
    # And a repeated report of the same wipe logs nothing more
    assert agent(instance.pk, 5, "stopped", wiped=wiped).status_code == 202
    assert NodeEvent.objects.filter(node=node, reason__startswith="Tenant data").count() == 1


def test_a_stop_whose_report_carries_the_wipe_frees_the_node_in_one_step(launch, api_client, org, region, flavor):
    node = node_with_gpus(region, flavor.gpu_model, n=8)
    agent = agent_for(node)
    instance = running(launch, agent)
    api_client.post(f"/api/v1/organizations/{org.slug}/instances/{instance.pk}/stop/")

    wiped = {"account": "nc-0123456789ab", "home": "/w/work", "files": 0}
    assert agent(instance.pk, 3, "stopped", wiped=wiped).status_code == 202

    node.refresh_from_db()
    assert node.wipe_pending_instance is None
    assert NodeEvent.objects.filter(node=node, reason__endswith="home, 0 files removed").count() == 1
    assert launch(name="metal-2").status_code == 201


@pytest.mark.parametrize(
    "body, field",
    [
        ({"flavor": "bare-metal/no-such-node"}, "flavor"),
        ({"flavor": "nonsense"}, "flavor"),
        ({"region": "mars-1"}, "region"),
        ({"ssh_keys": []}, "ssh_keys"),
        ({"ssh_keys": [999999]}, "ssh_keys"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_nothing_is_made(launch, region, flavor, body, field):
    node_with_gpus(region, flavor.gpu_model, n=8)

    reply = launch(**body)

    assert reply.status_code == 400, reply.json()
    assert field in reply.json(), reply.json()
    assert not Instance.objects.exists() and not Allocation.objects.exists()


def test_a_region_with_no_capacity_is_a_409_and_nothing_is_made(launch, region, flavor):
    node_with_gpus(region, flavor.gpu_model, n=8)  # capacity elsewhere

    reply = launch(region="eu-west-1")

    assert reply.status_code == 409, reply.json()
    assert {r["region"]: r["available"] for r in reply.json()["availability"]}["eu-west-1"] == 0
    assert not Instance.objects.exists() and not Allocation.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"state": "running", "wiped": {"account": None, "home": "/w", "files": 0}, **ENDPOINT},
        {"state": "stopped", "health_check": FAILED_CHECK},
        {"state": "failed", "health_check": {**FAILED_CHECK, "passed": True, "reasons": []}},
        {"state": "stopped", "wiped": {"account": "root; rm -rf /", "home": "/w", "files": 0}},
        {"state": "stopped", "wiped": {"account": None, "home": "/w", "files": -1}},
    ],
)
def test_a_report_field_out_of_place_is_a_400(launch, region, flavor, body):
    node = node_with_gpus(region, flavor.gpu_model, n=8)
    agent = agent_for(node)
    instance = instance_schedule(instance_id=launch().json()["id"])

    reply = agent(instance.pk, 1, **body)

    assert reply.status_code == 400, reply.content
    assert Instance.objects.get(pk=instance.pk).state == S.SCHEDULED


def test_a_node_back_from_down_is_not_placed_until_the_lost_tenants_data_is_wiped(launch, region, flavor):
    node = node_with_gpus(region, flavor.gpu_model, n=8)
    agent = agent_for(node)
    instance = running(launch, agent)

    # When its node stops answering, the instance is lost; when the node is back its capacity is freed
    node_state_transition(node_id=node.pk, to_state=NodeState.DOWN, reason="missed 2 heartbeats")
    instances_reconcile()
    assert Instance.objects.get(pk=instance.pk).state == S.LOST
    node_state_transition(node_id=node.pk, to_state=NodeState.READY, reason="heartbeat")
    assert Allocation.objects.get(pk=instance.allocation_id).state == AllocationState.RELEASED

    # Then the node is still not placed: the lost tenant's data may be on it
    assert launch(name="metal-2").status_code == 409

    # Until its agent, told to stop the lost workload, reports the wipe
    wiped = {"account": "nc-0123456789ab", "home": "/w/work", "files": 2}
    assert agent(instance.pk, 3, "stopped", wiped=wiped).status_code == 202
    assert launch(name="metal-2").status_code == 201


def test_a_queued_launch_waits_for_the_wipe_and_is_placed_after_it(launch, api_client, org, region, flavor):
    node = node_with_gpus(region, flavor.gpu_model, n=8)
    agent = agent_for(node)
    instance = running(launch, agent)
    api_client.post(f"/api/v1/organizations/{org.slug}/instances/{instance.pk}/stop/")
    assert agent(instance.pk, 3, "stopped").status_code == 202  # released; the wipe not reported yet

    # Given a launch that asked to wait
    queued = launch(name="metal-q", queue=True)
    assert queued.status_code == 202, queued.json()
    assert instances_queue_place() == []  # the node still holds the last tenant's data

    # When the wipe is reported, the queue's next pass places it
    wiped = {"account": "nc-0123456789ab", "home": "/w/work", "files": 0}
    assert agent(instance.pk, 4, "stopped", wiped=wiped).status_code == 202
    assert instances_queue_place() == [UUID(queued.json()["id"])]
