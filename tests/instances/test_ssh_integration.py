"""A GPU instance over SSH through every real piece: the API launch with the owner's key, a
Celery worker placing it, a real agent starting its sshd, and the real OpenSSH client logging in
with the chosen key (and only it) at the endpoint the API shows."""

import subprocess
from pathlib import Path

import pytest

from apps.accounts.ssh_keys import ssh_key_add
from apps.capacity.models import Gpu
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
PORTS = (42240, 42249)


def _key(folder: Path, name: str) -> Path:
    path = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True)
    return path


def _ssh(key: Path, runtime: InstanceRuntime, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "ssh",
            "-i",
            str(key),
            "-p",
            str(runtime.ssh_port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
            "-F",
            "/dev/null",
            f"{runtime.ssh_user}@{runtime.ssh_host}",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def ssh_node(live_portal, celery_worker, transactional_db, demo_catalog, tmp_path, process_logs):
    _, token = registration_token_create(region=Region.objects.get(code="us-east-1"), actor=None)
    agent = agent_start(
        process_logs,
        portal_url=live_portal.url,
        name="ssh-node",
        state_file=tmp_path / "state.json",
        token=token,
        address="127.0.0.1",
        ssh_ports=PORTS,
    )
    wait_until(lambda: Gpu.objects.filter(node__hostname="ssh-node").count() == 8)
    yield agent
    agent.stop()


def test_launch_log_in_with_the_chosen_key_only(live_portal, ssh_node, tmp_path):
    owner = UserFactory()
    org = OrganizationFactory(owner=owner)
    mine, theirs = _key(tmp_path, "mine"), _key(tmp_path, "theirs")
    key = ssh_key_add(user=owner, name="laptop", public_key=mine.with_suffix(".pub").read_text())
    client = logged_in_client(live_portal.url, owner.email)
    image = Image.objects.filter(offering_kinds__contains=["gpu_slice"]).first()

    # When the owner launches a GPU instance through the API with that key
    launched = client.post(
        f"/api/v1/organizations/{org.slug}/instances/",
        json={
            "flavor": "gpu-instances/1x-h100",
            "image": image.slug,
            "region": "us-east-1",
            "name": "it-ssh",
            "ssh_keys": [key.pk],
        },
    )
    assert launched.status_code == 201, launched.text
    instance_id = launched.json()["id"]

    # Then it runs, and its page shows the endpoint its agent reported
    wait_until(lambda: Instance.objects.get(pk=instance_id).state in (S.RUNNING, S.FAILED), timeout=90)
    instance = Instance.objects.get(pk=instance_id)
    assert instance.state == S.RUNNING, instance.state_reason
    runtime = InstanceRuntime.objects.get(instance_id=instance_id)
    assert runtime.ssh_host == "127.0.0.1" and PORTS[0] <= runtime.ssh_port <= PORTS[1]
    page = client.get(f"/orgs/{org.slug}/instances/{instance_id}/").text
    assert f"ssh -p {runtime.ssh_port} {runtime.ssh_user}@127.0.0.1" in page

    # And the chosen key logs in and sees only the instance's GPU; another key is refused
    done = _ssh(mine, runtime, 'echo "$CUDA_VISIBLE_DEVICES"')
    assert done.returncode == 0, done.stderr
    gpus = done.stdout.strip()
    assert gpus.startswith("GPU-") and "," not in gpus
    refused = _ssh(theirs, runtime, "true")
    assert refused.returncode == 255 and "Permission denied" in refused.stderr

    # When the owner stops it, the sshd goes with it
    assert client.post(f"/api/v1/organizations/{org.slug}/instances/{instance_id}/stop/").status_code == 200
    wait_until(lambda: Instance.objects.get(pk=instance_id).state == S.STOPPED, timeout=30)
    assert _ssh(mine, runtime, "true").returncode == 255
