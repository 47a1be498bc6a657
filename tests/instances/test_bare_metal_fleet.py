"""Bare metal on a fleet of two real agent processes (each its own simulated 8xH100 host, address
and SSH ports), launched through the API with a Celery worker placing it:

- a host whose periodic health check failed (`bad=0`) is cordoned with the reason and never
  handed out: the launch lands on the healthy host, is logged in to with the real `ssh` client,
  and when it is stopped and deleted its account, home and files are wiped on the host, the node
  says so in an event, and only after that is the node placed again;
- a host whose check passes at registration but fails right before the hand-over (`late_bad=0`)
  is cordoned with the reason, the launch fails with a message saying so, and launching again
  gets the other host.
"""

import pwd
import subprocess
from pathlib import Path

import pytest

from apps.accounts.ssh_keys import ssh_key_add
from apps.capacity.models import Allocation, Gpu, Node, NodeEvent, NodeState
from apps.capacity.services.nodes import registration_token_create
from apps.catalog.models import Image, Region
from apps.instances.models import Instance, InstanceRuntime, InstanceState
from tests.factories.accounts import OrganizationFactory, UserFactory
from tests.instances.test_notebook_integration import logged_in_client
from tests.support.processes import agent_start
from tests.support.ssh import NEEDS_ROOT_AND_OPENSSH
from tests.support.waiting import wait_until

pytestmark = [
    pytest.mark.integration,
    *NEEDS_ROOT_AND_OPENSSH,
]
S = InstanceState
ENDED = (S.RUNNING, S.FAILED)


def _key(folder: Path, name: str) -> Path:
    path = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True)
    return path


def _ssh(key: Path, runtime: InstanceRuntime, command: str) -> subprocess.CompletedProcess:
    options = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "BatchMode=yes", "IdentitiesOnly=yes"]
    options += ["LogLevel=ERROR", "ConnectTimeout=10"]
    argv = ["ssh", "-F", "/dev/null", "-i", str(key), "-p", str(runtime.ssh_port)]
    for option in options:
        argv += ["-o", option]
    argv += [f"{runtime.ssh_user}@{runtime.ssh_host}", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.fixture
def fleet(live_portal, celery_worker, transactional_db, demo_catalog, tmp_path, process_logs):
    """Start hosts given as (hostname, --simulate spec, address, first SSH port); yields a
    function that starts them and waits until each reported its GPUs and its health check."""
    region = Region.objects.get(code="us-east-1")
    agents = []

    def start(*hosts):
        for name, spec, address, port in hosts:
            _, token = registration_token_create(region=region, actor=None)
            agents.append(
                agent_start(
                    process_logs,
                    portal_url=live_portal.url,
                    name=name,
                    state_file=tmp_path / f"{name}.json",
                    token=token,
                    simulate=spec,
                    address=address,
                    ssh_ports=(port, port + 9),
                )
            )
        for name, *_ in hosts:
            wait_until(lambda n=name: Node.objects.filter(hostname=n, health_checked_at__isnull=False).exists())
            wait_until(lambda n=name: Gpu.objects.filter(node__hostname=n).count() == 8)
        return {agent.name.removeprefix("agent-"): agent for agent in agents}

    yield start
    for agent in agents:
        agent.stop()


@pytest.fixture
def customer(live_portal, tmp_path):
    owner = UserFactory()
    org = OrganizationFactory(owner=owner)
    private = _key(tmp_path, "mine")
    key = ssh_key_add(user=owner, name="laptop", public_key=private.with_suffix(".pub").read_text())
    client = logged_in_client(live_portal.url, owner.email)
    image = Image.objects.filter(offering_kinds__contains=["bare_metal"]).first()

    def launch(name):
        body = {"flavor": "bare-metal/8x-h100", "image": image.slug, "region": "us-east-1", "name": name}
        reply = client.post(f"/api/v1/organizations/{org.slug}/instances/", json={**body, "ssh_keys": [key.pk]})
        assert reply.status_code == 201, reply.text
        instance_id = reply.json()["id"]
        wait_until(lambda: Instance.objects.get(pk=instance_id).state in ENDED, timeout=90)
        return Instance.objects.select_related("node").get(pk=instance_id)

    return {"client": client, "org": org, "key": private, "launch": launch}


def test_a_cordoned_host_is_never_handed_out_and_a_released_node_is_wiped_before_reuse(fleet, customer):
    # Given a healthy host and one whose periodic health check fails on GPU 0
    agents = fleet(
        ("bm-good", "8xH100-80GB", "127.0.1.31", 42300), ("bm-bad", "8xH100-80GB,bad=0", "127.0.1.32", 42310)
    )
    bad = Node.objects.get(hostname="bm-bad")
    assert bad.state == NodeState.CORDONED and bad.state_reason.startswith("health check failed: GPU 0 (GPU-SIM-")

    # When a bare-metal node is launched, it is the healthy host, with all eight GPUs visible
    instance = customer["launch"]("metal-1")
    assert instance.state == S.RUNNING, instance.state_reason
    assert instance.node.hostname == "bm-good"
    runtime = InstanceRuntime.objects.get(instance=instance)
    assert runtime.ssh_host == "127.0.1.31"
    done = _ssh(customer["key"], runtime, 'echo "$CUDA_VISIBLE_DEVICES"; echo secret > ~/data.txt; pwd')
    assert done.returncode == 0, done.stderr
    gpus, home = done.stdout.split()
    assert sorted(gpus.split(",")) == sorted(Gpu.objects.filter(node=instance.node).values_list("uuid", flat=True))
    root = Path(agents["bm-good"].leaves_behind)
    assert Path(home) == root / str(instance.pk) / "work" and (Path(home) / "data.txt").read_text() == "secret\n"
    assert pwd.getpwnam(runtime.ssh_user).pw_dir == home

    # When the owner stops it
    client, org = customer["client"], customer["org"]
    assert client.post(f"/api/v1/organizations/{org.slug}/instances/{instance.pk}/stop/").status_code == 200
    wait_until(lambda: Instance.objects.get(pk=instance.pk).state == S.STOPPED, timeout=30)

    # Then the node has a wipe event, and the account, its home and the file are gone on the host
    # already (bare metal keeps no home across a stop), before any delete
    event = NodeEvent.objects.get(node=instance.node, reason__startswith=f"Tenant data of instance {instance.pk}")
    assert event.reason.endswith("home, 1 file removed") and runtime.ssh_user in event.reason
    assert not (root / str(instance.pk)).exists()
    with pytest.raises(KeyError):
        pwd.getpwnam(runtime.ssh_user)
    assert Node.objects.get(pk=instance.node_id).wipe_pending_instance is None
    assert _ssh(customer["key"], runtime, "true").returncode == 255
    # And deleting it changes none of that
    assert client.delete(f"/api/v1/organizations/{org.slug}/instances/{instance.pk}/").status_code in (200, 204)
    assert Instance.objects.get(pk=instance.pk).state == S.TERMINATED

    # And only after the wipe is the node placed again (the bad host still never is)
    again = customer["launch"]("metal-2")
    assert again.state == S.RUNNING and again.node.hostname == "bm-good", again.state_reason
    assert Allocation.objects.get(pk=again.allocation_id).created_at > event.created_at
    assert not Allocation.objects.filter(node=bad).exists()


def test_a_check_failing_at_hand_over_cordons_the_host_and_the_launch_fails_saying_so(fleet, customer):
    # Given two hosts that both passed their check at registration; the first in placement order
    # (by hostname) fails every later one, as a GPU that breaks after the node was checked
    fleet(
        ("bm-a-late", "8xH100-80GB,late_bad=0", "127.0.1.33", 42320), ("bm-b-good", "8xH100-80GB", "127.0.1.34", 42330)
    )
    late = Node.objects.get(hostname="bm-a-late")
    assert late.state == NodeState.READY and late.health_passed is True

    # When a bare-metal node is launched, it is given the late host, whose hand-over check fails
    instance = customer["launch"]("metal-1")

    # Then the owner is told and not given the node, which is cordoned with the reason
    assert instance.state == S.FAILED
    assert instance.node.hostname == "bm-a-late"
    assert instance.state_reason.startswith("The node failed its health check before hand-over (GPU 0 (GPU-SIM-")
    assert instance.state_reason.endswith(
        "it was taken out of service and you were not given it. Nothing is billed; launch again to get another node."
    )
    assert not InstanceRuntime.objects.filter(instance=instance, started_at__isnull=False).exists()
    late.refresh_from_db()
    assert late.state == NodeState.CORDONED and late.health_passed is False
    assert late.state_reason.startswith("health check failed: GPU 0 (GPU-SIM-")
    assert Allocation.objects.get(pk=instance.allocation_id).state == "released"

    # And launching again gets the other host
    again = customer["launch"]("metal-2")
    assert again.state == S.RUNNING and again.node.hostname == "bm-b-good", again.state_reason
